//! The `rnnlab` binary: the built-in plugins and the command line.

/// mimalloc instead of the system allocator: a training step frees and reallocates tensors of a
/// few MB each, which glibc returns to the kernel and faults back in, zeroed, every step.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    std::process::exit(rnnlab_cli::run(rnnlab_cli::registry()));
}
