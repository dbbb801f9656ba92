// Where a planned component lives: on the device, in host RAM, or on disk.
package dev.llamafit.plan;

/** The columns of a plan's breakdown. For the llamafit runtime the device is the CPU, so its column is RAM. */
public enum Column {
    DEVICE, HOST, DISK;

    public String key() { return name().toLowerCase(java.util.Locale.ROOT); }
}
