fn main() {
    // `sqlx::migrate!` embeds migrations/ at compile time: rebuild when a migration changes.
    println!("cargo:rerun-if-changed=migrations");
}
