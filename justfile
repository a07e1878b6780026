# Recipes for common tasks; the README's commands work without `just`.

# Start the platform on this machine.
up *ARGS:
    cargo run --release -p polybot-cli -- up {{ARGS}}

# Format check, clippy and the whole test suite (starts its own PostgreSQL).
test *ARGS:
    scripts/test {{ARGS}}

# Row level security overhead on the opportunities table.
bench-rls:
    cargo bench -p polybot-store --bench rls_overhead

fmt:
    cargo fmt --all
