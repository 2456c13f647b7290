//! Argument signatures of typed calls, computed once per argument type.
//!
//! A typed call ([`Client::call`](crate::Client::call)) sends the
//! fingerprint of its argument type's schema, so the server refuses
//! arguments of other types than the procedure's parameters before they
//! are logged (docs/PROCEDURES.md, "The procedure contract"). Building a
//! schema allocates; this cache makes the per-call cost one hash of the
//! type's name and a read lock.

use std::collections::HashMap;
use std::sync::OnceLock;

use ordo_schema::{Fingerprint, Schema};
use parking_lot::RwLock;

/// Argument types a process has called with; a few hundred at most in
/// practice, so the cache never evicts. Keyed by `type_name`, which is
/// the same for types that differ only in lifetimes (they have the same
/// schema).
fn cache() -> &'static RwLock<HashMap<&'static str, Fingerprint>> {
    static CACHE: OnceLock<RwLock<HashMap<&'static str, Fingerprint>>> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

/// The fingerprint of `A` used as a whole argument list: a tuple `(A, B)`
/// is two parameters, `()` none, any other type one.
pub fn args_signature<A: Schema + ?Sized>() -> Fingerprint {
    let name = std::any::type_name::<A>();
    if let Some(signature) = cache().read().get(name) {
        return *signature;
    }
    let (signature, _, _) = ordo_schema::fingerprint_of_args::<A>();
    cache().write().insert(name, signature);
    signature
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_cached_per_type_and_tell_types_apart() {
        let unsigned = args_signature::<(u64, u64, u64)>();
        let signed = args_signature::<(u64, u64, i64)>();
        assert_ne!(unsigned, signed);
        assert_eq!(unsigned, args_signature::<(u64, u64, u64)>());
        assert_eq!(
            unsigned,
            ordo_schema::fingerprint_of_args::<(u64, u64, u64)>().0
        );
        // Lifetimes do not change a schema.
        assert_eq!(
            args_signature::<(&str, u64)>(),
            args_signature::<(String, u64)>()
        );
    }
}
