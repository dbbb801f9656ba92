// train's --offload/--offload-dir/--workers flags: what is refused (exit 2, by name), plan --offload disk, the mpirun command line.
package dev.llamafit.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Path;
import java.util.List;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import dev.llamafit.io.InputException;
import dev.llamafit.testing.SharedData;

class OffloadWorkersFlagsTest {
    @TempDir Path tmp;

    private BadInputTest.Run train(String... extra) {
        List<String> args = new java.util.ArrayList<>(List.of("train", "--model", SharedData.require("models/tinystories-656k").toString(),
                "--data", SharedData.require("datasets/text/tinystories_sample.txt").toString(), "--output", tmp.resolve("out").toString(),
                "--steps", "1", "--batch-size", "1", "--seq-len", "32"));
        args.addAll(List.of(extra));
        return BadInputTest.run(args.toArray(String[]::new));
    }

    @Test
    void offloadCpuAndIncompleteDiskFlagsAreRefusedByName() {
        BadInputTest.assertBadInput(train("--offload", "cpu"), "--offload cpu", "--offload disk --offload-dir DIR", "plan --runtime pytorch");
        BadInputTest.assertBadInput(train("--offload", "disk"), "--offload disk needs --offload-dir DIR");
        BadInputTest.assertBadInput(train("--offload-dir", tmp.toString()), "--offload-dir", "add --offload disk");
        BadInputTest.assertBadInput(train("--offload", "nvme"), "--offload must be none or disk, got 'nvme'");
        BadInputTest.assertBadInput(train("--offload", "disk", "--offload-dir", tmp.toString(), "--optimizer", "adamw8bit", "--method", "lora"),
                "--optimizer adamw8bit");
    }

    @Test
    void planOffloadDiskShowsTheWindowInMemoryAndTheStateOnDisk() {
        BadInputTest.Run r = BadInputTest.run("plan", "--model", SharedData.require("models/tinystories-656k").toString(), "--runtime", "llamafit",
                "--device", "cpu", "--offload", "disk", "--offload-window", "1MiB", "--json");
        assertEquals(0, r.code(), r.err());
        assertTrue(r.out().contains("optimizer.offloaded"), r.out());
        assertTrue(r.out().contains("offloaded_disk"), r.out());
    }

    @Test
    void workersIsRefusedUnderMpirunWithAnotherWorldSizeAndDroppedFromTheRanksCommand() {
        assertEquals(0, Workers.toLaunch(null, null));
        assertEquals(0, Workers.toLaunch(1, null));
        assertEquals(4, Workers.toLaunch(4, null));
        assertEquals(0, Workers.toLaunch(2, "2"), "under mpirun with as many ranks it is ignored");
        InputException e = assertThrows(InputException.class, () -> Workers.toLaunch(4, "2"));
        assertTrue(e.getMessage().contains("already runs under mpirun with 2 ranks"), e.getMessage());
        assertEquals(List.of("train", "--model", "m", "--zero", "1"), Workers.withoutWorkers(List.of("train", "--workers", "4", "--model", "m", "--workers=4", "--zero", "1")));
        List<String> cmd = Workers.command(Path.of("/usr/bin/mpirun"), 4, List.of("train", "--workers", "4", "--steps", "3"), "/opt/llamafit/llamafit", 2, true);
        assertEquals(List.of("/usr/bin/mpirun", "--oversubscribe", "--allow-run-as-root", "-np", "4"), cmd.subList(0, 5));
        assertTrue(cmd.contains("/opt/llamafit/llamafit") && cmd.getLast().equals("3") && !cmd.contains("--workers"), cmd.toString());
        List<String> two = Workers.command(Path.of("mpirun"), 2, List.of("train"), "/l", 16, false);
        assertEquals(List.of("mpirun", "-np", "2"), two.subList(0, 3), "no --oversubscribe when the cores suffice");
    }
}
