//! Bank accounts: open, deposit, transfer, and read balances.
//!
//! Balances are `i64` (e.g. cents) and can never go negative. The sum of
//! all balances changes only by `open`, `open_many` and `deposit`, which
//! makes `total` a handy consistency check (and `total_range` the same
//! check in pages, for more accounts than one transaction's fuel can sum).
//!
//! Every procedure that touches given accounts declares them
//! (`partitions(...)`), so transactions on different accounts can run in
//! parallel; an account's partition is its id. `open_many` and `total`
//! declare nothing and run over all partitions.

use ordo_sdk::{Table, procedure};

/// Account id -> balance.
#[ordo_sdk::table]
const ACCOUNTS: Table<u64, i64> = Table::new("acct");

/// Opens account `id` with an initial `balance`.
#[procedure(partitions(id))]
fn open(id: u64, balance: i64) -> Result<(), String> {
    if balance < 0 {
        return Err(format!("initial balance {balance} is negative"));
    }
    if ACCOUNTS.contains(&id) {
        return Err(format!("account {id} already exists"));
    }
    ACCOUNTS.put(&id, &balance);
    Ok(())
}

/// Opens `count` accounts `first_id, first_id + 1, ...`, each with
/// `balance`. For loading benchmarks; aborts (opening none) if any exists.
///
/// Declares no partitions, so it runs over all of them (serially with
/// respect to every other transaction): a range of ids would be `count`
/// partitions, one per account, and a loader gains nothing from being
/// scheduled on them one by one.
#[procedure]
fn open_many(first_id: u64, count: u64, balance: i64) -> Result<(), String> {
    if balance < 0 {
        return Err(format!("initial balance {balance} is negative"));
    }
    let end = first_id
        .checked_add(count)
        .ok_or("account ids overflow u64")?;
    for id in first_id..end {
        if ACCOUNTS.contains(&id) {
            return Err(format!("account {id} already exists"));
        }
        ACCOUNTS.put(&id, &balance);
    }
    Ok(())
}

/// Adds `amount` to account `id`.
#[procedure(partitions(id))]
fn deposit(id: u64, amount: i64) -> Result<(), String> {
    if amount < 0 {
        return Err(format!("deposit amount {amount} is negative"));
    }
    let balance = balance_of(id)?;
    let balance = balance
        .checked_add(amount)
        .ok_or_else(|| format!("account {id}'s balance would overflow"))?;
    ACCOUNTS.put(&id, &balance);
    Ok(())
}

/// Moves `amount` from account `from` to account `to`.
#[procedure(partitions(from, to))]
fn transfer(from: u64, to: u64, amount: i64) -> Result<(), String> {
    if amount <= 0 {
        return Err(format!("transfer amount {amount} is not positive"));
    }
    if from == to {
        return Err(format!("cannot transfer from account {from} to itself"));
    }
    let from_balance = balance_of(from)?;
    let to_balance = balance_of(to)?;
    if from_balance < amount {
        return Err(format!(
            "insufficient funds: account {from} has {from_balance}, needs {amount}"
        ));
    }
    let to_balance = to_balance
        .checked_add(amount)
        .ok_or_else(|| format!("account {to}'s balance would overflow"))?;
    ACCOUNTS.put(&from, &(from_balance - amount));
    ACCOUNTS.put(&to, &to_balance);
    Ok(())
}

/// Account `id`'s balance.
#[procedure(read_only, partitions(id))]
fn balance(id: u64) -> Result<i64, String> {
    balance_of(id)
}

/// The sum of every account's balance. Scans every account, so declares
/// no partitions.
#[procedure(read_only)]
fn total() -> Result<i64, String> {
    ACCOUNTS.iter().try_fold(0i64, |sum, (_, balance)| {
        sum.checked_add(balance)
            .ok_or_else(|| "the total overflows i64".to_string())
    })
}

/// The sum of the balances of the accounts with ids in
/// `first_id..first_id + count`, and how many such accounts exist. `total`
/// in pages: summing a million accounts takes more fuel than one
/// transaction has, so a checker calls this for consecutive ranges and
/// adds the answers up. Declares no partitions (a range of ids is one
/// partition per account).
#[procedure(read_only)]
fn total_range(first_id: u64, count: u64) -> Result<(i64, u64), String> {
    let end = first_id
        .checked_add(count)
        .ok_or("account ids overflow u64")?;
    let mut sum = 0i64;
    let mut accounts = 0u64;
    for (_, balance) in ACCOUNTS.scan(first_id..end) {
        sum = sum
            .checked_add(balance)
            .ok_or_else(|| format!("the total of accounts {first_id}..{end} overflows i64"))?;
        accounts += 1;
    }
    Ok((sum, accounts))
}

fn balance_of(id: u64) -> Result<i64, String> {
    ACCOUNTS
        .get(&id)
        .ok_or_else(|| format!("no such account: {id}"))
}
