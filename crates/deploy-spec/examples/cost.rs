//! Prints the cost estimate for the given tenant counts with the default
//! assumptions, as `polybot cost` does (docs/cost.md is made from it):
//!
//!     cargo run -p polybot-deploy-spec --example cost -- 25 50 100 1000

use polybot_deploy_spec::cost::{Assumptions, PriceTable, estimate};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let prices = PriceTable::us_east_1()?;
    for arg in std::env::args().skip(1) {
        let tenants: u32 = arg.parse()?;
        let estimate = estimate(&prices, &Assumptions::for_tenants(tenants))?;
        println!("{}", estimate.render_table());
    }
    Ok(())
}
