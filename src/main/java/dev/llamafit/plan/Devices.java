// The CPU as a device to plan for, and the names a --device flag may take.
package dev.llamafit.plan;

/** The engine's device is this machine: its RAM and its worker threads. GPU presets live with the PyTorch profile. */
public final class Devices {
    /** The --device name of the CPU. */
    public static final String CPU = "cpu";

    private Devices() {}

    /** This machine: its physical RAM (MemTotal) and thread count. */
    public static Device cpu(long ramBytes, int threads) { return Device.cpu(CPU, ramBytes, threads); }
}
