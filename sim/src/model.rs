//! The checker's model: what a serial execution of the log, in log order,
//! must answer. Written from the procedures' documented behaviour
//! (procedures/examples/bank and lists), not from the engine: the
//! engine's answers are checked against it.

use std::collections::BTreeMap;

use ordo::AbortKind;
use ordo::Outcome;
use ordo_sequencer::entry::{ClientId, Entry};

/// What one operation of a simulated client asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Deploy {
        name: &'static str,
    },
    /// `open_many(0, count, balance)`.
    OpenAccounts {
        count: u64,
        balance: i64,
    },
    Transfer {
        from: u64,
        to: u64,
        amount: i64,
    },
    Append {
        key: u64,
        value: u64,
    },
    /// A read-only procedure through the log (a linearizable read).
    Read {
        key: ReadKey,
    },
}

impl Op {
    pub fn procedure(&self) -> &'static str {
        match self {
            Op::Deploy { .. } => "(deploy)",
            Op::OpenAccounts { .. } => "open_many",
            Op::Transfer { .. } => "transfer",
            Op::Append { .. } => "append",
            Op::Read { key } => key.procedure(),
        }
    }

    /// The call's postcard arguments (parameters in order).
    pub fn args(&self) -> Vec<u8> {
        let encoded = match self {
            Op::Deploy { .. } => Ok(Vec::new()),
            Op::OpenAccounts { count, balance } => postcard::to_stdvec(&(0u64, *count, *balance)),
            Op::Transfer { from, to, amount } => postcard::to_stdvec(&(*from, *to, *amount)),
            Op::Append { key, value } => postcard::to_stdvec(&(*key, *value)),
            Op::Read { key } => return key.args(),
        };
        encoded.expect("encoding integers into a Vec cannot fail")
    }

    /// Decodes the op a logged entry carries (the checker reads the log,
    /// not its own notes). `None` for entries no simulated client makes.
    pub fn from_entry(entry: &Entry) -> Option<Op> {
        match entry {
            Entry::Deploy(deploy) => match deploy.name.as_str() {
                "bank" => Some(Op::Deploy { name: "bank" }),
                "lists" => Some(Op::Deploy { name: "lists" }),
                _ => None,
            },
            Entry::Invoke(invocation) => match invocation.procedure.as_str() {
                "open_many" => {
                    let (_first, count, balance): (u64, u64, i64) =
                        postcard::from_bytes(&invocation.args).ok()?;
                    Some(Op::OpenAccounts { count, balance })
                }
                "transfer" => {
                    let (from, to, amount) = postcard::from_bytes(&invocation.args).ok()?;
                    Some(Op::Transfer { from, to, amount })
                }
                "append" => {
                    let (key, value) = postcard::from_bytes(&invocation.args).ok()?;
                    Some(Op::Append { key, value })
                }
                "balance" => {
                    let (id,): (u64,) = postcard::from_bytes(&invocation.args).ok()?;
                    Some(Op::Read {
                        key: ReadKey::Balance(id),
                    })
                }
                "read" => {
                    let (key,): (u64,) = postcard::from_bytes(&invocation.args).ok()?;
                    Some(Op::Read {
                        key: ReadKey::List(key),
                    })
                }
                _ => None,
            },
            _ => None,
        }
    }
}

/// An answer, reduced to what the checker compares: a committed result's
/// bytes, a deploy, or an abort's kind (messages are for people).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    Committed(Vec<u8>),
    Deployed,
    Aborted(AbortKind),
}

impl Answer {
    pub fn of(outcome: &Outcome) -> Answer {
        match outcome {
            Outcome::Committed { result } => Answer::Committed(result.clone()),
            Outcome::Deployed(_) => Answer::Deployed,
            Outcome::Aborted(abort) => Answer::Aborted(abort.kind),
        }
    }
}

/// The bank and the lists, executed serially.
#[derive(Clone, Debug, Default)]
pub struct Model {
    deployed: BTreeMap<&'static str, ()>,
    pub accounts: BTreeMap<u64, i64>,
    pub lists: BTreeMap<u64, Vec<u64>>,
    /// Exactly-once: the first answer to each request, and where it ran.
    answered: BTreeMap<(ClientId, u64), (u64, Answer)>,
}

fn committed_unit() -> Answer {
    Answer::Committed(Vec::new())
}

impl Model {
    /// Applies the entry at `seq` and returns the answer its request must
    /// get and the position it must name (the first run's, for a retry).
    pub fn apply(&mut self, seq: u64, client: (ClientId, u64), op: &Op) -> (u64, Answer) {
        if let Some(first) = self.answered.get(&client) {
            return first.clone();
        }
        let answer = self.run(op);
        self.answered.insert(client, (seq, answer.clone()));
        (seq, answer)
    }

    fn run(&mut self, op: &Op) -> Answer {
        let user_abort = Answer::Aborted(AbortKind::User);
        match op {
            Op::Deploy { name } => {
                self.deployed.insert(name, ());
                Answer::Deployed
            }
            Op::OpenAccounts { count, balance } => {
                if !self.deployed.contains_key("bank") {
                    return Answer::Aborted(AbortKind::UnknownProcedure);
                }
                if *balance < 0 || (0..*count).any(|id| self.accounts.contains_key(&id)) {
                    return user_abort;
                }
                for id in 0..*count {
                    self.accounts.insert(id, *balance);
                }
                committed_unit()
            }
            Op::Transfer { from, to, amount } => {
                if !self.deployed.contains_key("bank") {
                    return Answer::Aborted(AbortKind::UnknownProcedure);
                }
                if *amount <= 0 || from == to {
                    return user_abort;
                }
                let (Some(&from_balance), Some(&to_balance)) =
                    (self.accounts.get(from), self.accounts.get(to))
                else {
                    return user_abort;
                };
                if from_balance < *amount {
                    return user_abort;
                }
                let Some(to_after) = to_balance.checked_add(*amount) else {
                    return user_abort;
                };
                self.accounts.insert(*from, from_balance - amount);
                self.accounts.insert(*to, to_after);
                committed_unit()
            }
            Op::Append { key, value } => {
                if !self.deployed.contains_key("lists") {
                    return Answer::Aborted(AbortKind::UnknownProcedure);
                }
                let list = self.lists.entry(*key).or_default();
                list.push(*value);
                Answer::Committed(
                    postcard::to_stdvec(list).expect("encoding a list into a Vec cannot fail"),
                )
            }
            Op::Read { key } => self.read(key),
        }
    }

    /// What a read-only `balance(id)` or `read(key)` answers now.
    pub fn read(&self, read: &ReadKey) -> Answer {
        let module = match read {
            ReadKey::Balance(_) => "bank",
            ReadKey::List(_) => "lists",
        };
        if !self.deployed.contains_key(module) {
            return Answer::Aborted(AbortKind::UnknownProcedure);
        }
        match read {
            ReadKey::Balance(id) => match self.accounts.get(id) {
                Some(balance) => Answer::Committed(
                    postcard::to_stdvec(balance).expect("encoding an i64 cannot fail"),
                ),
                None => Answer::Aborted(AbortKind::User),
            },
            ReadKey::List(key) => Answer::Committed(
                postcard::to_stdvec(&self.lists.get(key).cloned().unwrap_or_default())
                    .expect("encoding a list cannot fail"),
            ),
        }
    }
}

/// What a stale read asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadKey {
    Balance(u64),
    List(u64),
}

impl ReadKey {
    pub fn procedure(self) -> &'static str {
        match self {
            ReadKey::Balance(_) => "balance",
            ReadKey::List(_) => "read",
        }
    }

    pub fn args(self) -> Vec<u8> {
        let (ReadKey::Balance(key) | ReadKey::List(key)) = self;
        postcard::to_stdvec(&(key,)).expect("encoding a u64 cannot fail")
    }
}
