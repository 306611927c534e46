//! The `sundial` command.
#![forbid(unsafe_code)]

fn main() {
    println!("sundial {}", env!("CARGO_PKG_VERSION"));
}
