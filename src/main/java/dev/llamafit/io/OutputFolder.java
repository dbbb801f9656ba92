// One run per output folder: the checks an output path passes before any work, and the lock file OUTPUT/.llamafit.lock.
package dev.llamafit.io;

import java.io.IOException;
import java.io.PrintStream;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.channels.FileLock;
import java.nio.channels.OverlappingFileLockException;
import java.nio.charset.StandardCharsets;
import java.nio.file.AccessDeniedException;
import java.nio.file.FileSystemException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.time.Duration;
import java.time.Instant;
import java.time.temporal.ChronoUnit;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.ThreadLocalRandom;

import com.fasterxml.jackson.databind.JsonNode;

/**
 * A command that writes a folder first {@link #check}s the path (exit 2 naming it, before any model is loaded) and
 * then holds {@link #lock} on it until it exits. The lock is two things at once: an OS lock on {@code .llamafit.lock}
 * (atomic, and released by the kernel when the process dies, even under SIGKILL) and the file's content, the holder's
 * PID, host and start time, which the refusal names. A lock file whose OS lock is free belongs to a run that is gone:
 * on this host, when its PID no longer runs (or runs another program), it is taken over with a note; a file written on
 * another host (a shared file system, where OS locks may not reach) is never taken over, the user is told how to
 * remove it. The lock is re-entrant for the thread that holds it (the CLI takes it before planning, the trainer again
 * inside), and refused to every other thread and process.
 *
 * <p>Releasing empties the file rather than deleting it. A deleted lock file could be locked by a process that had
 * opened it just before the delete while a third one locks the new file at the same path, and both would "hold" the
 * folder; a file that stays has one OS lock. Never open the lock file through a second channel while holding it:
 * closing any descriptor of a file drops the process's POSIX locks on it.
 */
public final class OutputFolder {
    public static final String LOCK_FILE = ".llamafit.lock";

    /** Locks this JVM holds, by folder: POSIX locks are per process, so the JVM must refuse its own threads itself. */
    private static final Map<Path, Lock> HELD = new HashMap<>();

    private OutputFolder() {}

    /**
     * Bad input (exit 2) if {@code out} cannot be a folder this process writes: it is a file, a parent on its way is
     * a file, or the nearest existing folder is not writable. Creates nothing. {@code flag} names the option ("--output").
     */
    public static void check(Path out, String flag) {
        Path abs = out.toAbsolutePath().normalize();
        if (Files.exists(abs) && !Files.isDirectory(abs))
            throw InputException.at(out, flag + " is a file, not a folder: choose another " + flag + " or move the file away");
        Path existing = abs;
        while (existing != null && !Files.exists(existing)) existing = existing.getParent();
        if (existing == null) return; // nothing exists, not even the root: let the write say why
        if (!Files.isDirectory(existing))
            throw InputException.at(out, flag + ": " + existing + " is a file, not a folder, so nothing can be created under it");
        if (!Files.isWritable(existing))
            throw InputException.at(out, flag + ": " + (existing.equals(abs) ? "the folder" : existing) + " is not writable (permission denied"
                    + " or a read-only file system): choose another " + flag + " or fix its permissions");
    }

    /**
     * Checks {@code out}, creates it and takes its lock, or stops with bad input naming the holder. {@code log} gets
     * a note when a stale lock is taken over (may be null). Close the lock when the command ends; a shutdown hook
     * releases it on Ctrl-C, and the kernel frees the OS lock whatever ends the process.
     */
    public static Lock lock(Path out, String flag, PrintStream log) {
        check(out, flag);
        Path dir = out.toAbsolutePath().normalize();
        synchronized (HELD) {
            Lock mine = HELD.get(dir);
            if (mine != null) {
                if (mine.thread == Thread.currentThread()) {
                    mine.depth++;
                    return mine;
                }
                throw held(out, mine.holder);
            }
            try {
                Files.createDirectories(dir);
            } catch (IOException e) {
                throw cannotCreate(out, flag, dir, e);
            }
            Lock l = tryLock(out, flag, dir.resolve(LOCK_FILE), log);
            HELD.put(dir, l);
            l.hook = new Thread(l::release, "llamafit-release-" + LOCK_FILE);
            Runtime.getRuntime().addShutdownHook(l.hook);
            return l;
        }
    }

    private static Lock tryLock(Path out, String flag, Path file, PrintStream log) {
        FileChannel ch;
        try {
            ch = FileChannel.open(file, StandardOpenOption.CREATE, StandardOpenOption.READ, StandardOpenOption.WRITE);
        } catch (IOException e) {
            throw cannotCreate(out, flag, file, e);
        }
        boolean keep = false;
        try {
            FileLock os;
            try {
                os = ch.tryLock();
            } catch (OverlappingFileLockException e) {
                os = null; // another channel of this JVM holds it (HELD is the normal guard; this is the backstop)
            }
            Holder previous = Holder.parse(readAll(ch));
            if (os == null) throw held(out, previous);
            if (previous != null) {
                if (!previous.host.equals(HOST))
                    throw InputException.at(out, "the folder's lock " + file + " was taken on host " + previous.host + " (PID " + previous.pid
                            + ", since " + previous.since + "); if no run on " + previous.host + " uses this folder any more, delete " + file
                            + " and try again");
                if (previous.running()) throw held(out, previous);
            }
            Holder me = Holder.current();
            String content = me.toJson();
            ch.truncate(0);
            ByteBuffer b = ByteBuffer.wrap(content.getBytes(StandardCharsets.UTF_8));
            for (long pos = 0; b.hasRemaining(); ) pos += ch.write(b, pos);
            ch.force(true);
            if (previous != null && log != null)
                log.printf("note: took over the stale lock %s of PID %d on %s (since %s), which is no longer running%n",
                        file, previous.pid, previous.host, previous.since);
            keep = true;
            return new Lock(out.toAbsolutePath().normalize(), file, ch, os, me);
        } catch (IOException e) {
            throw cannotCreate(out, flag, file, e);
        } finally {
            if (!keep) closeQuietly(ch);
        }
    }

    private static InputException held(Path out, Holder h) {
        String who = h == null ? "another process (its lock file is still being written)"
                : (h.pid == ProcessHandle.current().pid() ? "this process" : "PID " + h.pid) + " on host " + h.host + ", since " + h.since;
        return InputException.at(out, "the folder is in use by another llamafit run (" + who + "; lock file " + out.resolve(LOCK_FILE)
                + "): wait for it to finish, or write to another folder");
    }

    /** Not allowed to create the folder or the lock file is bad input; an I/O failure there (disk full) is not. */
    private static RuntimeException cannotCreate(Path out, String flag, Path what, IOException e) {
        if (e instanceof AccessDeniedException || e instanceof FileSystemException f && f.getReason() != null
                && f.getReason().contains("Read-only file system"))
            return InputException.at(out, flag + ": cannot create " + what + " (" + OutputWriteException.reason(e)
                    + "): choose another " + flag + " or fix its permissions");
        return new java.io.UncheckedIOException(OutputWriteException.of("creating", what, e));
    }

    private static String readAll(FileChannel ch) throws IOException {
        long size = Math.min(ch.size(), 1 << 16);
        ByteBuffer b = ByteBuffer.allocate((int) size);
        while (b.hasRemaining() && ch.read(b, b.position()) > 0) { /* read on */ }
        return new String(b.array(), 0, b.position(), StandardCharsets.UTF_8);
    }

    private static void closeQuietly(FileChannel ch) {
        try {
            ch.close();
        } catch (IOException ignored) {
            // Closing frees the OS lock either way.
        }
    }

    /** This host's name as the kernel has it (no DNS lookup, which can hang). */
    static final String HOST = hostName();

    private static String hostName() {
        for (String f : new String[] {"/proc/sys/kernel/hostname", "/etc/hostname"}) {
            try {
                String h = Files.readString(Path.of(f)).strip();
                if (!h.isEmpty()) return h;
            } catch (IOException | RuntimeException ignored) {
                // try the next source
            }
        }
        String env = System.getenv("HOSTNAME");
        if (env != null && !env.isBlank()) return env.strip();
        try {
            return java.net.InetAddress.getLocalHost().getHostName();
        } catch (IOException e) {
            return "unknown-host";
        }
    }

    /** What a lock file says: who holds the folder, and enough to tell whether that process still runs. */
    record Holder(long pid, String host, String since, String processStart, String token) {
        Holder {
            if (pid <= 0 || host == null || host.isBlank() || since == null) throw new IllegalArgumentException("incomplete lock file");
        }

        static Holder current() {
            ProcessHandle self = ProcessHandle.current();
            return new Holder(self.pid(), HOST, Instant.now().truncatedTo(ChronoUnit.SECONDS).toString(),
                    self.info().startInstant().map(Instant::toString).orElse(null), Long.toHexString(ThreadLocalRandom.current().nextLong()));
        }

        /** The holder a lock file names; null for an empty or unreadable file (nothing to report or to protect). */
        static Holder parse(String content) {
            if (content == null || content.isBlank()) return null;
            try {
                JsonNode n = Json.MAPPER.readTree(content);
                return new Holder(n.path("pid").asLong(), n.path("host").asText(null), n.path("since").asText(null),
                        n.path("process_start").asText(null), n.path("token").asText(null));
            } catch (IOException | RuntimeException e) {
                return null;
            }
        }

        String toJson() {
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("pid", pid);
            m.put("host", host);
            m.put("since", since);
            if (processStart != null) m.put("process_start", processStart);
            m.put("token", token);
            return Json.write(m) + "\n";
        }

        /** On this host: whether the PID still runs the same process (a reused PID started later is another program). */
        boolean running() {
            Optional<ProcessHandle> p = ProcessHandle.of(pid).filter(ProcessHandle::isAlive);
            if (p.isEmpty()) return false;
            if (processStart == null) return true;
            Optional<Instant> started = p.get().info().startInstant();
            return started.isEmpty() || Duration.between(Instant.parse(processStart), started.get()).abs().toMillis() < 1000;
        }
    }

    /** A held output folder; {@link #close} releases it (once per {@link #lock} call that returned it). */
    public static final class Lock implements AutoCloseable {
        private final Path dir;
        private final Path file;
        private final FileChannel channel;
        private final FileLock os;
        private final Holder holder;
        private final Thread thread = Thread.currentThread();
        private int depth = 1;
        private Thread hook;
        private boolean released;

        private Lock(Path dir, Path file, FileChannel channel, FileLock os, Holder holder) {
            this.dir = dir;
            this.file = file;
            this.channel = channel;
            this.os = os;
            this.holder = holder;
        }

        /** The locked folder (absolute). */
        public Path folder() { return dir; }

        /** The lock file. */
        public Path file() { return file; }

        @Override
        public void close() {
            synchronized (HELD) {
                if (--depth > 0) return;
                HELD.remove(dir);
                try {
                    Runtime.getRuntime().removeShutdownHook(hook);
                } catch (IllegalStateException shuttingDown) {
                    // The hook is running or will run: release() is idempotent.
                }
            }
            release();
        }

        /** Empties the lock file while still holding the OS lock (see {@link OutputFolder}), then frees the OS lock. */
        private synchronized void release() {
            if (released) return;
            released = true;
            try {
                channel.truncate(0);
                channel.force(true);
            } catch (IOException ignored) {
                // A holder left in the file is stale once the OS lock is free: the next run takes it over.
            }
            try {
                os.release();
            } catch (IOException ignored) {
                // Closing the channel frees it too.
            }
            closeQuietly(channel);
        }
    }
}
