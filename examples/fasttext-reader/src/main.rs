//! `rnnlab-fasttext`: the rnnlab command line with the fastText reader added.

fn main() {
    let mut r = rnnlab_cli::registry();
    rnnlab_fasttext::register(&mut r);
    std::process::exit(rnnlab_cli::run(r));
}
