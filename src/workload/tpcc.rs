//! A TPC-C subset over the tpcc example: NewOrder and Payment.
//!
//! The mix is 50% NewOrder and 50% Payment. (The standard mix is at least
//! 45% NewOrder and 43% Payment, plus 4% each of Order-Status, Delivery and
//! Stock-Level, which the example does not implement.) As in the
//! specification, a NewOrder has 5 to 15 lines of distinct items, each
//! with a quantity of 1 to 10; 1% of NewOrders name an unused item id in
//! their last line, so they roll back; each line's supply warehouse is
//! another one with probability 1% (with more than one warehouse), so
//! about 10% of NewOrders touch a second warehouse. A Payment of 1.00 to
//! 5,000.00 is made for a customer of another warehouse 15% of the time
//! (with more than one warehouse). Warehouses, districts, customers and
//! items are chosen uniformly (not with the specification's NURand).

use super::{Check, Generator, Request, SplitMix64, Workload, chunks};

/// Percent of requests that are NewOrder; the rest are Payment.
const NEW_ORDER_PERCENT: u64 = 50;
/// Lines of a NewOrder: 5 to 15.
const LINES_MIN: u64 = 5;
const LINES_MAX: u64 = 15;
/// Percent of NewOrders that roll back (an unused item id).
const ROLLBACK_PERCENT: u64 = 1;
/// Percent of NewOrder lines supplied by a remote warehouse.
const REMOTE_LINE_PERCENT: u64 = 1;
/// Percent of Payments for a customer of a remote warehouse.
const REMOTE_PAYMENT_PERCENT: u64 = 15;
/// Payment amounts, cents: 1.00 to 5,000.00.
const PAYMENT_MIN: i64 = 100;
const PAYMENT_MAX: i64 = 500_000;

/// `ordo bench tpcc`: `warehouses` warehouses of `districts` districts,
/// each with `customers_per_district` customers, and `items` items
/// (stocked in every warehouse). Ids are 1-based.
#[derive(Clone, Debug)]
pub struct Tpcc {
    pub warehouses: u32,
    /// 1 to 10 (the specification: 10).
    pub districts: u32,
    /// The specification: 3,000.
    pub customers_per_district: u32,
    /// The specification: 100,000.
    pub items: u32,
}

impl Tpcc {
    /// Items (with their stock: two writes each) per load transaction:
    /// about 17 million fuel, a sixth of the default budget.
    pub const ITEMS_PER_LOAD: u32 = 5_000;
    /// Customers per load transaction (a district of the specification's
    /// size in one): about 12 million fuel.
    pub const CUSTOMERS_PER_LOAD: u32 = 3_000;

    /// `warehouses` warehouses of the specification's size: 10 districts
    /// of 3,000 customers, 100,000 items.
    ///
    /// # Panics
    /// If `warehouses` is 0.
    pub fn new(warehouses: u32) -> Tpcc {
        Tpcc::scaled(warehouses, 10, 3_000, 100_000)
    }

    /// A scaled-down (or up) database.
    ///
    /// # Panics
    /// If any count is 0, `districts` is over 10, or `items` is
    /// `u32::MAX` (one id past the last item must be free, for rollbacks).
    pub fn scaled(
        warehouses: u32,
        districts: u32,
        customers_per_district: u32,
        items: u32,
    ) -> Tpcc {
        assert!(warehouses > 0, "TPC-C needs at least one warehouse");
        assert!(
            (1..=10).contains(&districts),
            "a warehouse has 1 to 10 districts, not {districts}"
        );
        assert!(customers_per_district > 0, "districts need customers");
        assert!(
            items > 0 && items < u32::MAX,
            "items must be 1 to u32::MAX - 1, not {items}"
        );
        Tpcc {
            warehouses,
            districts,
            customers_per_district,
            items,
        }
    }
}

impl Workload for Tpcc {
    fn name(&self) -> &'static str {
        "tpcc"
    }

    fn modules(&self) -> Vec<(&'static str, &'static [u8])> {
        vec![("tpcc", crate::modules::TPCC)]
    }

    fn load(&self) -> Vec<Request> {
        let mut load = Vec::new();
        for w_id in 1..=self.warehouses {
            load.push(Request::new("tpcc_load_warehouse", &(w_id, self.districts)));
            for (first, count) in chunks(self.items.into(), Tpcc::ITEMS_PER_LOAD.into()) {
                load.push(Request::new(
                    "tpcc_load_items",
                    &(w_id, first as u32 + 1, count as u32),
                ));
            }
            for d_id in 1..=self.districts {
                for (first, count) in chunks(
                    self.customers_per_district.into(),
                    Tpcc::CUSTOMERS_PER_LOAD.into(),
                ) {
                    load.push(Request::new(
                        "tpcc_load_customers",
                        &(w_id, d_id, first as u32 + 1, count as u32),
                    ));
                }
            }
        }
        load
    }

    fn generator(&self, stream: u64) -> Box<dyn Generator> {
        Box::new(TpccGenerator {
            tpcc: self.clone(),
            rng: SplitMix64::new(stream),
        })
    }

    fn checks(&self) -> Vec<Check> {
        (1..=self.warehouses)
            .map(|w_id| {
                Check::commits(
                    format!("TPC-C consistency conditions 1 and 2 hold in warehouse {w_id}"),
                    Request::new("tpcc_check", &w_id),
                )
            })
            .collect()
    }

    fn probes(&self) -> Vec<Request> {
        let w_id = self.warehouses;
        vec![
            Request::new("tpcc_warehouse", &w_id),
            Request::new("tpcc_stock", &(w_id, self.items)),
            Request::new(
                "tpcc_customer",
                &(w_id, self.districts, self.customers_per_district),
            ),
        ]
    }

    fn data(&self) -> String {
        format!(
            "{} warehouses of {} items and {} customers per district",
            self.warehouses, self.items, self.customers_per_district
        )
    }
}

struct TpccGenerator {
    tpcc: Tpcc,
    rng: SplitMix64,
}

impl TpccGenerator {
    /// A uniform id in `1..=count`.
    fn id(&mut self, count: u32) -> u32 {
        1 + self.rng.below(count.into()) as u32
    }

    /// A warehouse other than `w_id` (there must be one).
    fn other_warehouse(&mut self, w_id: u32) -> u32 {
        let other = self.id(self.tpcc.warehouses - 1);
        if other >= w_id { other + 1 } else { other }
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.rng.below(100) < percent
    }

    fn new_order(&mut self) -> Request {
        let w_id = self.id(self.tpcc.warehouses);
        let d_id = self.id(self.tpcc.districts);
        let c_id = self.id(self.tpcc.customers_per_district);
        let lines = (LINES_MIN + self.rng.below(LINES_MAX - LINES_MIN + 1))
            .min(self.tpcc.items.into()) as usize;
        let rollback = self.chance(ROLLBACK_PERCENT);
        let mut items: Vec<(u32, u32, u32)> = Vec::with_capacity(lines);
        while items.len() < lines {
            let i_id = if rollback && items.len() == lines - 1 {
                // One past the last item: never loaded.
                self.tpcc.items + 1
            } else {
                self.id(self.tpcc.items)
            };
            if items.iter().any(|&(seen, _, _)| seen == i_id) {
                continue;
            }
            let supply_w_id = if self.tpcc.warehouses > 1 && self.chance(REMOTE_LINE_PERCENT) {
                self.other_warehouse(w_id)
            } else {
                w_id
            };
            let quantity = 1 + self.rng.below(10) as u32;
            items.push((i_id, supply_w_id, quantity));
        }
        Request::new("tpcc_new_order", &(w_id, d_id, c_id, items))
    }

    fn payment(&mut self) -> Request {
        let w_id = self.id(self.tpcc.warehouses);
        let d_id = self.id(self.tpcc.districts);
        let (c_w_id, c_d_id) = if self.tpcc.warehouses > 1 && self.chance(REMOTE_PAYMENT_PERCENT) {
            (self.other_warehouse(w_id), self.id(self.tpcc.districts))
        } else {
            (w_id, d_id)
        };
        let c_id = self.id(self.tpcc.customers_per_district);
        let amount = PAYMENT_MIN + self.rng.below((PAYMENT_MAX - PAYMENT_MIN + 1) as u64) as i64;
        Request::new("tpcc_payment", &(w_id, d_id, c_w_id, c_d_id, c_id, amount))
    }
}

impl Generator for TpccGenerator {
    fn next_request(&mut self) -> Request {
        if self.chance(NEW_ORDER_PERCENT) {
            self.new_order()
        } else {
            self.payment()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type NewOrder = (u32, u32, u32, Vec<(u32, u32, u32)>);
    type Payment = (u32, u32, u32, u32, u32, i64);

    #[test]
    fn the_mix_is_half_new_order_half_payment_with_spec_shaped_requests() {
        let tpcc = Tpcc::scaled(4, 10, 3_000, 100_000);
        let mut generator = tpcc.generator(1);
        let (mut new_orders, mut payments) = (0u32, 0u32);
        let (mut rollbacks, mut remote_orders, mut remote_lines, mut lines) = (0, 0, 0, 0);
        let mut remote_payments = 0;
        for _ in 0..100_000 {
            let request = generator.next_request();
            match request.procedure {
                "tpcc_new_order" => {
                    new_orders += 1;
                    let (w_id, d_id, c_id, items): NewOrder =
                        postcard::from_bytes(&request.args).unwrap();
                    assert!((1..=4).contains(&w_id));
                    assert!((1..=10).contains(&d_id));
                    assert!((1..=3_000).contains(&c_id));
                    assert!((5..=15).contains(&items.len()), "{} lines", items.len());
                    let mut ids: Vec<u32> = items.iter().map(|line| line.0).collect();
                    ids.sort();
                    ids.dedup();
                    assert_eq!(ids.len(), items.len(), "items repeat: {items:?}");
                    for (index, &(i_id, supply_w_id, quantity)) in items.iter().enumerate() {
                        if i_id == 100_001 {
                            assert_eq!(index, items.len() - 1, "only the last line is invalid");
                        } else {
                            assert!((1..=100_000).contains(&i_id));
                        }
                        assert!((1..=4).contains(&supply_w_id));
                        assert!((1..=10).contains(&quantity));
                        lines += 1;
                        if supply_w_id != w_id {
                            remote_lines += 1;
                        }
                    }
                    if items.last().unwrap().0 == 100_001 {
                        rollbacks += 1;
                    }
                    if items.iter().any(|&(_, supply_w_id, _)| supply_w_id != w_id) {
                        remote_orders += 1;
                    }
                }
                "tpcc_payment" => {
                    payments += 1;
                    let (w_id, d_id, c_w_id, c_d_id, c_id, amount): Payment =
                        postcard::from_bytes(&request.args).unwrap();
                    for w in [w_id, c_w_id] {
                        assert!((1..=4).contains(&w));
                    }
                    for d in [d_id, c_d_id] {
                        assert!((1..=10).contains(&d));
                    }
                    assert!((1..=3_000).contains(&c_id));
                    assert!((100..=500_000).contains(&amount));
                    if c_w_id != w_id {
                        remote_payments += 1;
                    } else {
                        assert_eq!(c_d_id, d_id, "a local payment is for the same district");
                    }
                }
                other => panic!("unexpected procedure {other}"),
            }
        }
        assert!(
            (49_000..51_000).contains(&new_orders),
            "{new_orders} NewOrders"
        );
        assert_eq!(new_orders + payments, 100_000);
        let percent = |part: u32, whole: u32| part as f64 * 100.0 / whole as f64;
        let rollback = percent(rollbacks, new_orders);
        assert!((0.8..1.2).contains(&rollback), "{rollback}% roll back");
        let remote_line = percent(remote_lines, lines);
        assert!(
            (0.9..1.1).contains(&remote_line),
            "{remote_line}% of lines remote"
        );
        // 1 - 0.99^10 for 10 lines on average: about 9.5%.
        let remote_order = percent(remote_orders, new_orders);
        assert!(
            (9.0..10.5).contains(&remote_order),
            "{remote_order}% of NewOrders remote"
        );
        let remote_payment = percent(remote_payments, payments);
        assert!(
            (14.0..16.0).contains(&remote_payment),
            "{remote_payment}% of Payments remote"
        );
    }

    #[test]
    fn one_warehouse_is_never_remote_and_few_items_do_not_loop() {
        // Three items: orders are capped at three distinct lines.
        let tpcc = Tpcc::scaled(1, 1, 1, 3);
        let mut generator = tpcc.generator(9);
        for _ in 0..2_000 {
            let request = generator.next_request();
            if request.procedure == "tpcc_new_order" {
                let (w_id, d_id, c_id, items): NewOrder =
                    postcard::from_bytes(&request.args).unwrap();
                assert_eq!((w_id, d_id, c_id), (1, 1, 1));
                assert_eq!(items.len(), 3);
                assert!(
                    items
                        .iter()
                        .all(|&(i_id, w, _)| w == 1 && (1..=4).contains(&i_id))
                );
            } else {
                let (w_id, d_id, c_w_id, c_d_id, c_id, _): Payment =
                    postcard::from_bytes(&request.args).unwrap();
                assert_eq!((w_id, d_id, c_w_id, c_d_id, c_id), (1, 1, 1, 1, 1));
            }
        }
    }

    #[test]
    fn load_covers_every_row_once_in_bounded_chunks() {
        let tpcc = Tpcc::scaled(3, 10, 7_000, 12_345);
        let load = tpcc.load();
        let mut warehouses = Vec::new();
        let mut items = std::collections::BTreeMap::<u32, Vec<(u32, u32)>>::new();
        let mut customers = std::collections::BTreeMap::<(u32, u32), Vec<(u32, u32)>>::new();
        for request in &load {
            match request.procedure {
                "tpcc_load_warehouse" => {
                    let (w_id, districts): (u32, u32) =
                        postcard::from_bytes(&request.args).unwrap();
                    assert_eq!(districts, 10);
                    warehouses.push(w_id);
                }
                "tpcc_load_items" => {
                    let (w_id, first, count): (u32, u32, u32) =
                        postcard::from_bytes(&request.args).unwrap();
                    assert!(count <= Tpcc::ITEMS_PER_LOAD);
                    items.entry(w_id).or_default().push((first, count));
                }
                "tpcc_load_customers" => {
                    let (w_id, d_id, first, count): (u32, u32, u32, u32) =
                        postcard::from_bytes(&request.args).unwrap();
                    assert!(count <= Tpcc::CUSTOMERS_PER_LOAD);
                    customers
                        .entry((w_id, d_id))
                        .or_default()
                        .push((first, count));
                }
                other => panic!("unexpected procedure {other}"),
            }
        }
        assert_eq!(warehouses, [1, 2, 3]);
        // Each range list is consecutive from 1 and ends at the last id.
        let covers = |ranges: &[(u32, u32)], total: u32| {
            let mut next = 1;
            for &(first, count) in ranges {
                assert_eq!(first, next, "{ranges:?}");
                next += count;
            }
            assert_eq!(next, total + 1, "{ranges:?}");
        };
        assert_eq!(items.len(), 3);
        for ranges in items.values() {
            covers(ranges, 12_345);
        }
        assert_eq!(customers.len(), 30);
        for ranges in customers.values() {
            assert_eq!(ranges.len(), 3);
            covers(ranges, 7_000);
        }

        let checks = tpcc.checks();
        assert_eq!(checks.len(), 3);
        for (w_id, check) in (1u32..).zip(&checks) {
            assert_eq!(check.requests, [Request::new("tpcc_check", &w_id)]);
        }
    }

    #[test]
    fn same_stream_same_requests() {
        let tpcc = Tpcc::scaled(2, 10, 30, 100);
        let draw = |stream| {
            let mut generator = tpcc.generator(stream);
            (0..50)
                .map(|_| generator.next_request())
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(3), draw(3));
        assert_ne!(draw(3), draw(4));
    }
}
