//! docs/cost.md shows what `polybot cost` prints: this keeps them equal.

use std::path::Path;

use polybot_deploy_spec::cost::{Assumptions, PriceTable, estimate};

#[test]
fn docs_cost_md_shows_the_current_estimates() {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/cost.md"))
            .unwrap();
    let prices = PriceTable::us_east_1().unwrap();
    for tenants in [25, 50, 100, 1000] {
        let table = estimate(&prices, &Assumptions::for_tenants(tenants))
            .unwrap()
            .render_table();
        assert!(
            doc.contains(table.trim_end()),
            "docs/cost.md is out of date for {tenants} tenants; regenerate it with \
             `cargo run -p polybot-deploy-spec --example cost -- 25 50 100 1000`:\n{table}"
        );
    }
}
