// A named collection of tensors, e.g. one safetensors file or a sharded checkpoint.
package dev.llamafit.io.safetensors;

import java.nio.file.Path;
import java.util.Map;
import java.util.Optional;
import java.util.Set;

import dev.llamafit.tensor.Tensor;

/** Read access to named tensors. Tensors returned stay valid until the source is closed. */
public interface TensorSource extends AutoCloseable {
    /** Names of all tensors, in file order. */
    Set<String> names();

    /** The tensor, if present (a view over mapped memory; no copy). */
    Optional<Tensor> find(String name);

    /** The file holding {@code name} (for error messages). */
    Path fileOf(String name);

    /** The {@code __metadata__} string map of the (first) file; empty if none. */
    Map<String, String> metadata();

    @Override
    void close();
}
