//! The `rnnlab` binary: the built-in plugins and the command line.

fn main() {
    std::process::exit(rnnlab_cli::run(rnnlab_cli::registry()));
}
