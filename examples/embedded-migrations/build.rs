//! Embeds `migrations/` into the binary; the build fails on an invalid set.
fn main() {
    capstan_migrate::embed::build("migrations");
}
