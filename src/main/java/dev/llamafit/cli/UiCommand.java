// `llamafit ui`: serves the local web page for plans and runs (dev.llamafit.ui) until interrupted.
package dev.llamafit.cli;

import java.io.IOException;
import java.io.PrintWriter;
import java.net.BindException;
import java.net.InetAddress;
import java.net.UnknownHostException;
import java.nio.file.Path;
import java.util.concurrent.Callable;

import dev.llamafit.io.InputException;
import dev.llamafit.ui.UiServer;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;
import picocli.CommandLine.Model.CommandSpec;

@Command(name = "ui", mixinStandardHelpOptions = true, sortOptions = false,
        description = "Serve a local web page: plan a run (the options of `plan`, both runtimes) and watch the runs under --runs (loss, eval loss, "
                + "learning rate, tokens/s, planned vs measured memory). Stop with Ctrl-C.")
final class UiCommand implements Callable<Integer> {
    @Spec CommandSpec spec;

    @Option(names = "--port", defaultValue = "8080", description = "TCP port; 0 picks a free one (default: ${DEFAULT-VALUE}).") int port;
    @Option(names = "--runs", defaultValue = ".", description = "Folder whose run folders (train --output) the page lists; no file outside it is served (default: the current folder).") Path runs;
    @Option(names = "--host", defaultValue = "127.0.0.1", description = "Interface to listen on (default: ${DEFAULT-VALUE}, this machine only). "
            + "Another one lets others on the network read your run folders and plans.") String host;

    @Override
    public Integer call() throws IOException, InterruptedException {
        PrintWriter out = spec.commandLine().getOut();
        if (port < 0 || port > 65535) throw new InputException("--port must be 0..65535, got " + port);
        if (!isLoopback(host))
            spec.commandLine().getErr().println("llamafit: warning: --host " + host + " serves the page beyond this machine: anyone who can reach it "
                    + "reads the files under --runs; there is no login");
        UiServer server;
        try {
            server = UiServer.start(host, port, runs, PlanCommand::json);
        } catch (BindException e) {
            throw new InputException("cannot listen on " + host + ":" + port + " (" + e.getMessage() + "): choose another --port, or 0 for any free one");
        }
        try (server) {
            out.println("llamafit ui: " + server.uri() + " (runs under " + server.runsRoot() + "); Ctrl-C stops it");
            out.flush();
            Thread.currentThread().join(); // serve until the process is interrupted
        }
        return Main.OK;
    }

    static boolean isLoopback(String host) {
        try {
            return InetAddress.getByName(host).isLoopbackAddress();
        } catch (UnknownHostException e) {
            throw new InputException("--host " + host + " is not a known name or address");
        }
    }
}
