//! Embeds `migrations/`; each release binary uses the prefix it was written for.
fn main() {
    capstan_migrate::embed::build("migrations");
}
