//! chirpy 2.0.0: see the crate docs for what this release reads and writes.
fn main() {
    chirpy::main(chirpy::Release::V2);
}
