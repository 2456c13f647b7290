//! `ordo-entry`: what the log holds: batches of entries, each entry a deploy or an
//! invocation. These types are the replicated input of every engine, so
//! their postcard encoding is part of the on-disk format: change it only
//! with a format version bump.

use serde::{Deserialize, Serialize};

/// A client's identity for exactly-once: `(client_id, request_id)` names
/// one logical request across retries, reconnects and restarts.
pub type ClientId = u128;

/// The high 64 bits of every id a client registers a session under
/// ([`SessionChange::Register`]): ASCII `ordosess`. The engine tells a
/// registered id from an unregistered one by these bits alone, so a
/// request from a registered id whose session has expired is recognised
/// as such with nothing remembered about it. Unregistered ids are random
/// (a 2^-64 chance of carrying the tag), and logs written before sessions
/// existed hold only those.
pub const SESSION_CLIENT_ID_TAG: u64 = u64::from_be_bytes(*b"ordosess");

/// Whether `client_id` is in the registered-session id space.
pub fn is_session_client_id(client_id: ClientId) -> bool {
    (client_id >> 64) as u64 == SESSION_CLIENT_ID_TAG
}

/// The session id for the random `low` bits.
pub fn session_client_id(low: u64) -> ClientId {
    ((SESSION_CLIENT_ID_TAG as u128) << 64) | low as u128
}

/// How a procedure's arguments (and so its result) are encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ArgsEncoding {
    /// postcard: compact, used by the typed Rust SDK.
    Postcard,
    /// JSON: used by the CLI.
    Json,
}

/// A call of a stored procedure.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invocation {
    pub client_id: ClientId,
    pub request_id: u64,
    /// Every request id of this client below this one has had its answer
    /// delivered, so the engine may forget those results. Bounds the
    /// exactly-once table (Raft thesis, section 6.3).
    pub acked_below: u64,
    pub procedure: String,
    pub encoding: ArgsEncoding,
    pub args: Vec<u8>,
}

/// Deploying (or upgrading) a module under a name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deploy {
    pub client_id: ClientId,
    pub request_id: u64,
    pub name: String,
    pub wasm: Vec<u8>,
}

/// Removing a deployed module (`ordo undeploy`): from this position its
/// procedures are unknown. The rows of its tables stay.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Undeploy {
    pub client_id: ClientId,
    pub request_id: u64,
    pub name: String,
}

/// Registering or ending a client session (Raft thesis, section 6.3): the
/// exactly-once table learns of a client only through the log, so every
/// replica and every replay opens and expires the same sessions at the
/// same positions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionEntry {
    /// Must satisfy [`is_session_client_id`].
    pub client_id: ClientId,
    /// The request id of this entry itself (answers are matched by it).
    pub request_id: u64,
    pub change: SessionChange,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SessionChange {
    /// Opens the session (idempotent: registering a live session again
    /// only marks it active).
    Register,
    /// Ends the session and frees its results; later requests under the
    /// id get `session_expired`.
    End,
}

/// An entry of the log. postcard encodes the variant by its index, so new
/// kinds go at the end and old logs keep decoding.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Entry {
    Invoke(Invocation),
    Deploy(Deploy),
    Session(SessionEntry),
    /// A call whose postcard arguments were checked, before they were
    /// logged, against the parameter schema with this fingerprint (16
    /// bytes, docs/PROCEDURES.md "The procedure contract"). The engine
    /// checks the fingerprint again when it runs the call, so a redeploy
    /// that changed the signature in between aborts it
    /// (`signature_mismatch`) instead of misreading its bytes.
    InvokeChecked {
        invocation: Invocation,
        signature: Signature,
    },
    /// A deploy that also empties `reset_tables` (development only:
    /// `ordo deploy --reset-table`, refused unless the server allows it).
    /// The tables are emptied only if the deploy succeeds, after its
    /// migration if it has one, at the deploy's position.
    DeployResetting {
        deploy: Deploy,
        reset_tables: Vec<String>,
    },
    /// Added last, so older logs decode as they did.
    Undeploy(Undeploy),
}

/// The fingerprint of a procedure's parameter schema.
pub type Signature = [u8; 16];

impl Entry {
    pub fn client(&self) -> (ClientId, u64) {
        match self {
            Entry::Invoke(invocation) | Entry::InvokeChecked { invocation, .. } => {
                (invocation.client_id, invocation.request_id)
            }
            Entry::Deploy(deploy) | Entry::DeployResetting { deploy, .. } => {
                (deploy.client_id, deploy.request_id)
            }
            Entry::Session(session) => (session.client_id, session.request_id),
            Entry::Undeploy(undeploy) => (undeploy.client_id, undeploy.request_id),
        }
    }

    /// The call, if this entry is one.
    pub fn invocation(&self) -> Option<&Invocation> {
        match self {
            Entry::Invoke(invocation) | Entry::InvokeChecked { invocation, .. } => Some(invocation),
            Entry::Deploy(_)
            | Entry::DeployResetting { .. }
            | Entry::Session(_)
            | Entry::Undeploy(_) => None,
        }
    }

    /// A call, checked against `signature` if there is one.
    pub fn call(invocation: Invocation, signature: Option<Signature>) -> Entry {
        match signature {
            Some(signature) => Entry::InvokeChecked {
                invocation,
                signature,
            },
            None => Entry::Invoke(invocation),
        }
    }
}

/// One log record: a run of entries with dense sequence numbers
/// `first_seq ..= first_seq + entries.len() - 1`, stamped with the time the
/// sequencer closed it. That timestamp is the only clock a procedure sees.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    pub first_seq: u64,
    pub timestamp_ms: u64,
    pub entries: Vec<Entry>,
}

impl Batch {
    /// The sequence number of the last entry, or `first_seq - 1` if empty.
    pub fn last_seq(&self) -> u64 {
        self.first_seq + self.entries.len() as u64 - 1
    }

    pub fn encode(&self) -> Vec<u8> {
        postcard::to_stdvec(self).expect("encoding a batch into a Vec cannot fail")
    }

    pub fn decode(bytes: &[u8]) -> Result<Batch, postcard::Error> {
        postcard::from_bytes(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tags of the kinds logs already hold must never move.
    #[test]
    fn entry_kinds_keep_their_postcard_tags() {
        let invoke = Entry::Invoke(Invocation {
            client_id: 1,
            request_id: 2,
            acked_below: 0,
            procedure: "p".into(),
            encoding: ArgsEncoding::Json,
            args: vec![],
        });
        let deploy = Entry::Deploy(Deploy {
            client_id: 1,
            request_id: 2,
            name: "m".into(),
            wasm: vec![],
        });
        let session = Entry::Session(SessionEntry {
            client_id: session_client_id(5),
            request_id: 1,
            change: SessionChange::End,
        });
        for (entry, tag) in [(invoke, 0u8), (deploy, 1), (session, 2)] {
            let bytes = postcard::to_stdvec(&entry).unwrap();
            assert_eq!(bytes[0], tag, "{entry:?}");
            assert_eq!(postcard::from_bytes::<Entry>(&bytes).unwrap(), entry);
        }
    }

    #[test]
    fn session_ids_carry_the_tag() {
        assert!(is_session_client_id(session_client_id(0)));
        assert!(is_session_client_id(session_client_id(u64::MAX)));
        assert!(!is_session_client_id(7));
        assert!(!is_session_client_id(u128::MAX));
    }
}
