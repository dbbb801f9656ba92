// The ledger's memory categories: every byte the engine holds is filed under exactly one.
package dev.llamafit.memory;

/** Memory categories shared by the engine's ledger and the planner (DESIGN §3). */
public enum Category {
    WEIGHTS("weights"),
    MASTER_WEIGHTS("master_weights"),
    GRADIENTS("gradients"),
    OPTIMIZER("optimizer"),
    ACTIVATIONS("activations"),
    KV_CACHE("kv_cache"),
    WORKSPACE("workspace"),
    OFFLOADED_HOST("offloaded_host"),
    OFFLOADED_DISK("offloaded_disk");

    private final String key;

    Category(String key) { this.key = key; }

    /** The stable name used in reports and JSON. */
    public String key() { return key; }
}
