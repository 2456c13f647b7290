//! The SmallBank benchmark (Alomari et al., "The Cost of Serializability on
//! Platforms That Use Snapshot Isolation", ICDE 2008) as ordo procedures.
//!
//! Customers are identified by id; each has a checking and a savings
//! balance, kept in two tables as in the original schema. Every transaction
//! aborts if a customer it names does not exist.
//!
//! Both tables are keyed by customer id, so a customer's two rows share a
//! partition (the id). Every transaction declares the customers it names
//! (`partitions(...)`), so transactions on different customers can run in
//! parallel; only the loader `create_many` runs over all partitions.

use ordo_sdk::{Table, abort, procedure};

/// Customer id -> checking balance.
#[ordo_sdk::table]
const CHECKING: Table<u64, i64> = Table::new("sb_checking");
/// Customer id -> savings balance.
#[ordo_sdk::table]
const SAVINGS: Table<u64, i64> = Table::new("sb_savings");

fn checking(id: u64) -> i64 {
    CHECKING
        .get(&id)
        .unwrap_or_else(|| abort(format_args!("no such customer: {id}")))
}

fn savings(id: u64) -> i64 {
    SAVINGS
        .get(&id)
        .unwrap_or_else(|| abort(format_args!("no such customer: {id}")))
}

fn add(a: i64, b: i64) -> i64 {
    a.checked_add(b)
        .unwrap_or_else(|| abort("balance arithmetic overflows i64"))
}

fn sub(a: i64, b: i64) -> i64 {
    a.checked_sub(b)
        .unwrap_or_else(|| abort("balance arithmetic overflows i64"))
}

/// Creates customer `id` with the given balances. Aborts if it exists.
#[procedure(partitions(id))]
fn create_account(id: u64, checking: i64, savings: i64) -> Result<(), String> {
    if CHECKING.contains(&id) || SAVINGS.contains(&id) {
        return Err(format!("customer {id} already exists"));
    }
    CHECKING.put(&id, &checking);
    SAVINGS.put(&id, &savings);
    Ok(())
}

/// Creates customers `first_id .. first_id + count`, each with the given
/// balances. For loading; aborts (creating none) if any exists.
///
/// Declares no partitions (a range of ids is one partition per customer),
/// so it runs over all of them.
#[procedure]
fn create_many(first_id: u64, count: u64, checking: i64, savings: i64) -> Result<(), String> {
    let end = first_id
        .checked_add(count)
        .ok_or("customer ids overflow u64")?;
    for id in first_id..end {
        if CHECKING.contains(&id) || SAVINGS.contains(&id) {
            return Err(format!("customer {id} already exists"));
        }
        CHECKING.put(&id, &checking);
        SAVINGS.put(&id, &savings);
    }
    Ok(())
}

/// Balance: the customer's checking plus savings balance.
#[procedure(read_only, partitions(id))]
fn balance(id: u64) -> i64 {
    add(checking(id), savings(id))
}

/// DepositChecking: adds `amount` to the checking balance. Aborts if
/// `amount` is negative.
#[procedure(partitions(id))]
fn deposit_checking(id: u64, amount: i64) -> Result<(), String> {
    if amount < 0 {
        return Err(format!("deposit amount {amount} is negative"));
    }
    CHECKING.put(&id, &add(checking(id), amount));
    Ok(())
}

/// TransactSavings: adds `amount` (possibly negative) to the savings
/// balance. Aborts if the result would be negative.
#[procedure(partitions(id))]
fn transact_savings(id: u64, amount: i64) -> Result<(), String> {
    let balance = add(savings(id), amount);
    if balance < 0 {
        return Err(format!(
            "savings of customer {id} would become negative ({balance})"
        ));
    }
    SAVINGS.put(&id, &balance);
    Ok(())
}

/// Amalgamate: moves all of `from`'s funds (checking and savings) into
/// `to`'s checking account, leaving `from` with zero in both.
#[procedure(partitions(from, to))]
fn amalgamate(from: u64, to: u64) {
    let total = add(checking(from), savings(from));
    // Read `to` only after zeroing `from`: if they are the same customer,
    // the funds end up in its checking account rather than being doubled.
    let _ = checking(to);
    CHECKING.put(&from, &0);
    SAVINGS.put(&from, &0);
    CHECKING.put(&to, &add(checking(to), total));
}

/// WriteCheck: debits `amount` from checking; if checking plus savings is
/// less than `amount`, a penalty of 1 is debited as well. (The balance may
/// go negative: that is the overdraft the penalty is for.)
#[procedure(partitions(id))]
fn write_check(id: u64, amount: i64) {
    let checking_balance = checking(id);
    let total = add(checking_balance, savings(id));
    let debit = if total < amount {
        add(amount, 1)
    } else {
        amount
    };
    CHECKING.put(&id, &sub(checking_balance, debit));
}

/// SendPayment: moves `amount` from `from`'s checking to `to`'s checking.
/// Aborts if `from`'s checking balance is less than `amount`.
#[procedure(partitions(from, to))]
fn send_payment(from: u64, to: u64, amount: i64) -> Result<(), String> {
    let from_balance = checking(from);
    // Check `to` exists before writing anything.
    let _ = checking(to);
    if from_balance < amount {
        return Err(format!(
            "insufficient funds: customer {from} has {from_balance} in checking, needs {amount}"
        ));
    }
    CHECKING.put(&from, &sub(from_balance, amount));
    // Re-read: `to` may be `from`.
    CHECKING.put(&to, &add(checking(to), amount));
    Ok(())
}
