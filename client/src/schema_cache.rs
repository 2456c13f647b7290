//! Argument signatures of typed calls, computed once per argument type.
//!
//! A typed call ([`Client::call`](crate::Client::call)) sends the
//! fingerprint of its argument type's schema, so the server refuses
//! arguments of other types than the procedure's parameters before they
//! are logged (docs/PROCEDURES.md, "The procedure contract"). Building a
//! schema allocates; this per-thread cache makes the per-call cost a
//! short scan of a few entries.

use std::cell::RefCell;

use ordo_schema::{Fingerprint, Schema};

/// Argument types cached per thread; beyond this many, signatures are
/// computed on every call (correct, only slower).
const CACHED_TYPES_MAX: usize = 256;

thread_local! {
    /// `(address, length)` of an argument type's `type_name`, and its
    /// signature. Equal addresses and lengths are the same string, so the
    /// same type name (types that differ only in lifetimes share a name
    /// and a schema); one type may appear twice under two addresses,
    /// which costs an entry, nothing else. A linear scan of a few entries
    /// is cheaper than hashing the name.
    static CACHE: RefCell<Vec<(usize, usize, Fingerprint)>> = const { RefCell::new(Vec::new()) };
}

/// The fingerprint of `A` used as a whole argument list: a tuple `(A, B)`
/// is two parameters, `()` none, any other type one.
pub fn args_signature<A: Schema + ?Sized>() -> Fingerprint {
    let name = std::any::type_name::<A>();
    let key = (name.as_ptr() as usize, name.len());
    let cached = CACHE.with_borrow(|cache| {
        cache
            .iter()
            .find(|(address, len, _)| (*address, *len) == key)
            .map(|(_, _, signature)| *signature)
    });
    if let Some(signature) = cached {
        return signature;
    }
    let (signature, _, _) = ordo_schema::fingerprint_of_args::<A>();
    CACHE.with_borrow_mut(|cache| {
        if cache.len() < CACHED_TYPES_MAX {
            cache.push((key.0, key.1, signature));
        }
    });
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
