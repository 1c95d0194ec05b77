//! `narun-exec`: the landlock exec wrapper (see `narun::exec`).

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(narun::exec::main(args));
}
