//! `rnnlab-indrnn`: the rnnlab command line with the IndRNN cell added.

fn main() {
    let mut r = rnnlab_cli::registry();
    rnnlab_indrnn::register(&mut r);
    std::process::exit(rnnlab_cli::run(r));
}
