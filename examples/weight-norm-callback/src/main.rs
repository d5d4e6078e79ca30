//! `rnnlab-weight-norm`: the rnnlab command line with the `weight_norm` callback added.

fn main() {
    let mut r = rnnlab_cli::registry();
    rnnlab_weight_norm::register(&mut r);
    std::process::exit(rnnlab_cli::run(r));
}
