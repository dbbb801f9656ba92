// A memory plan: components by column and ledger category, per-phase peaks, and whether it fits the device.
package dev.llamafit.plan;

import java.util.List;

import dev.llamafit.memory.Category;

/**
 * The planner's answer. Device and host peaks are maxima over {@link Phase}s of the sum of the components in that
 * column; disk is the largest disk footprint.
 *
 * @param device     the device it was planned for
 * @param components every component, device column first
 * @param notes      caveats (e.g. assumptions of the PyTorch profile)
 */
public record MemoryPlan(Device device, List<Component> components, List<String> notes) {
    public MemoryPlan {
        components = List.copyOf(components);
        notes = List.copyOf(notes);
    }

    /** The component of that name; an IllegalArgumentException if the plan has none. */
    public Component component(String name) {
        for (Component c : components) if (c.name().equals(name)) return c;
        throw new IllegalArgumentException("no component '" + name + "' in this plan");
    }

    /** Sum of the column's components in one phase, counted as {@code metric} sees them. */
    public long bytes(Column column, Phase phase, Metric metric) {
        long sum = 0;
        for (Component c : components)
            if (c.column() == column && metric.includes(c.accounting())) sum = Math.addExact(sum, c.bytes(phase));
        return sum;
    }

    /** The column's peak over phases, as {@code metric} sees it. */
    public long peak(Column column, Metric metric) {
        long max = 0;
        for (Phase p : Phase.values()) max = Math.max(max, bytes(column, p, metric));
        return max;
    }

    /** Everything on the device: for a GPU what nvidia-smi shows, for the CPU the ledger's total. */
    public long devicePeakBytes() { return peak(Column.DEVICE, Metric.NVIDIA_SMI); }

    public long hostPeakBytes() { return peak(Column.HOST, Metric.NVIDIA_SMI); }

    public long diskBytes() { return peak(Column.DISK, Metric.NVIDIA_SMI); }

    /** The phase at which the device peaks. */
    public Phase peakPhase() {
        Phase best = Phase.FORWARD;
        for (Phase p : Phase.values())
            if (bytes(Column.DEVICE, p, Metric.NVIDIA_SMI) > bytes(Column.DEVICE, best, Metric.NVIDIA_SMI)) best = p;
        return best;
    }

    public long headroomBytes() { return device.memoryBytes() - devicePeakBytes(); }

    public boolean fits() { return devicePeakBytes() <= device.memoryBytes(); }

    /** The peak over phases of one ledger category on the device (tensors only), e.g. for comparing with the ledger. */
    public long categoryPeak(Category category) {
        long max = 0;
        for (Phase p : Phase.values()) {
            long sum = 0;
            for (Component c : components)
                if (c.column() == Column.DEVICE && c.category() == category && c.accounting() == Accounting.TENSOR) sum += c.bytes(p);
            max = Math.max(max, sum);
        }
        return max;
    }
}
