//! Rebuild when a migration is added or changed: `sqlx::migrate!` embeds the
//! files, but cargo does not watch the directory on its own.

fn main() {
    println!("cargo:rerun-if-changed=../../migrations");
}
