//! The values ordo's host (the engine) and its guests (procedure modules
//! built with `ordo-sdk` and its `#[procedure]` macro) must agree on, in
//! one place: docs/ABI.md in code.
//!
//! Both sides use these constants and [`partition_key`] instead of copies
//! of their own, so a change here changes both at once. Everything is
//! `const` or a pure function over bytes, allocating nothing and using
//! nothing else of this crate.
//!
//! Where Rust wants a literal (the SDK's `#[link(wasm_import_module)]`,
//! the export names and link section `#[procedure]` generates), the
//! literal is checked against the constant here at compile time
//! ([`str_eq`], [`is_valid_name`]).

/// The version of the ABI this crate describes (docs/ABI.md's title).
pub const ABI_VERSION: u32 = 1;

// ---------------------------------------------------------------------------
// Host imports
// ---------------------------------------------------------------------------

/// The import module of every host function. The SDK's
/// `#[link(wasm_import_module = "ordo")]` must spell it as a literal; it
/// checks that literal against this constant at compile time.
pub const HOST_MODULE: &str = "ordo";

/// The names of the host functions (imports of [`HOST_MODULE`]).
pub mod import {
    pub const GET: &str = "get";
    pub const PUT: &str = "put";
    pub const DELETE: &str = "delete";
    pub const SCAN: &str = "scan";
    pub const SET_RESULT: &str = "set_result";
    pub const ABORT: &str = "abort";
    pub const PANIC: &str = "panic";
    pub const LOG: &str = "log";
    pub const SEQUENCE: &str = "sequence";
    pub const NOW_MS: &str = "now_ms";
    pub const RANDOM_SEED: &str = "random_seed";
}

/// A wasm value type of the ABI (pointers and lengths are `i32`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValType {
    I32,
    I64,
}

/// The type of an import or export: its parameters and results.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FuncType {
    pub params: &'static [ValType],
    pub results: &'static [ValType],
}

use ValType::{I32, I64};

/// Every host function a module may import, with its type. A module that
/// imports anything else, or one of these with another type, is refused.
pub const HOST_IMPORTS: [(&str, FuncType); 11] = [
    (import::GET, func(&[I32, I32, I32, I32], &[I64])),
    (import::PUT, func(&[I32, I32, I32, I32], &[])),
    (import::DELETE, func(&[I32, I32], &[])),
    (
        import::SCAN,
        func(&[I32, I32, I32, I32, I32, I32, I32], &[I64]),
    ),
    (import::SET_RESULT, func(&[I32, I32], &[])),
    (import::ABORT, func(&[I32, I32], &[])),
    (import::PANIC, func(&[I32, I32], &[])),
    (import::LOG, func(&[I32, I32, I32], &[])),
    (import::SEQUENCE, func(&[], &[I64])),
    (import::NOW_MS, func(&[], &[I64])),
    (import::RANDOM_SEED, func(&[], &[I64])),
];

const fn func(params: &'static [ValType], results: &'static [ValType]) -> FuncType {
    FuncType { params, results }
}

/// The type of the host function `name`, if there is one.
pub fn host_import(name: &str) -> Option<FuncType> {
    HOST_IMPORTS
        .iter()
        .find(|(import, _)| *import == name)
        .map(|&(_, ty)| ty)
}

/// What `get` returns for an absent key.
pub const GET_ABSENT: i64 = -1;
/// The `end_len` that gives `scan` no upper bound.
pub const SCAN_NO_END: i32 = -1;

/// The `level` codes of the `log` import.
pub mod log_level {
    pub const ERROR: i32 = 1;
    pub const WARN: i32 = 2;
    pub const INFO: i32 = 3;
    pub const DEBUG: i32 = 4;
    pub const TRACE: i32 = 5;
}

// ---------------------------------------------------------------------------
// Module exports
// ---------------------------------------------------------------------------

/// The module's one linear memory.
pub const MEMORY_EXPORT: &str = "memory";
/// `(len: i32) -> i32`: a guest buffer the host copies arguments into.
pub const ARGS_BUFFER_EXPORT: &str = "ordo_args_buffer";
pub const ARGS_BUFFER_TYPE: FuncType = func(&[I32], &[I32]);
/// `ordo_proc_<name>(args_len: i32, encoding: i32) -> i32`: a procedure.
pub const PROCEDURE_EXPORT_PREFIX: &str = "ordo_proc_";
/// `ordo_keys_<name>`: a procedure's partition declaration, typed like
/// the procedure.
pub const DECLARATION_EXPORT_PREFIX: &str = "ordo_keys_";
/// The type of a procedure and of its declaration.
pub const PROCEDURE_TYPE: FuncType = func(&[I32, I32], &[I32]);
/// `ordo_schema_<name>() -> i32`: a procedure's schema.
pub const SCHEMA_EXPORT_PREFIX: &str = "ordo_schema_";
/// `ordo_table_<id>() -> i32`: one declared table's schema.
pub const TABLE_EXPORT_PREFIX: &str = "ordo_table_";
/// The type of a schema export.
pub const SCHEMA_TYPE: FuncType = func(&[], &[I32]);
/// The custom section of the procedures' metadata lines.
pub const METADATA_SECTION: &str = "ordo.procedures";

/// Longest procedure name (and schema or table export suffix), in bytes.
pub const NAME_BYTES_MAX: usize = 64;

/// Whether `name` may follow an export prefix: `[a-z_][a-z0-9_]*`, at
/// most [`NAME_BYTES_MAX`] bytes. The engine checks every export by it,
/// and `#[procedure]` and `#[table]` check their names by it at compile
/// time.
pub const fn is_valid_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() > NAME_BYTES_MAX {
        return false;
    }
    if !(bytes[0].is_ascii_lowercase() || bytes[0] == b'_') {
        return false;
    }
    let mut i = 1;
    while i < bytes.len() {
        let b = bytes[i];
        if !(b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') {
            return false;
        }
        i += 1;
    }
    true
}

/// The `encoding` argument of a procedure or declaration export, and so
/// of the result: postcard.
pub const ENCODING_POSTCARD: i32 = 0;
/// The `encoding` argument: JSON.
pub const ENCODING_JSON: i32 = 1;

/// What a procedure, declaration or schema export returns: success.
pub const STATUS_OK: i32 = 0;
/// The procedure aborted (or the declaration failed); the result is the
/// UTF-8 reason.
pub const STATUS_ABORTED: i32 = 1;
/// The arguments did not decode; the result is the UTF-8 description.
pub const STATUS_BAD_ARGUMENTS: i32 = 2;

// ---------------------------------------------------------------------------
// Keys and partitions
// ---------------------------------------------------------------------------

/// The byte that ends a table's name in a raw key
/// (`name 0x00 CLASS encoded_key`).
pub const TABLE_NAME_END: u8 = 0x00;

/// The largest fixed-width class: classes `0..=32` mean "the first
/// component is that many bytes".
pub const CLASS_FIXED_MAX: u8 = 32;
/// The class of byte-string keys: the first component is the escaped
/// byte string (`0x00` written as `0x00 0xFF`) up to and including its
/// `0x00 0x00` terminator.
pub const CLASS_BYTES: u8 = 0x80;
/// The class meaning "the whole encoding is the first component".
pub const CLASS_WHOLE: u8 = 0xFF;

/// The partition key of a raw store key (docs/ABI.md, "Keys and
/// partitions"): the first key component of a table key, found through
/// the class byte after the table name's `0x00`, or the whole raw key
/// when the key does not follow that layout. The host places keys by it
/// and the guest declares partitions by it, so both call this one
/// function.
pub fn partition_key(raw: &[u8]) -> &[u8] {
    let Some(separator) = raw.iter().position(|&b| b == TABLE_NAME_END) else {
        return raw;
    };
    partition_key_of_classified(&raw[separator + 1..]).unwrap_or(raw)
}

/// The partition key of the part of a raw key after the table name's
/// `0x00`: a class byte, then the encoded key. `None` if it does not
/// follow the layout (the partition key is then the whole raw key).
pub fn partition_key_of_classified(classified: &[u8]) -> Option<&[u8]> {
    let (&class, rest) = classified.split_first()?;
    match class {
        0..=CLASS_FIXED_MAX => rest.get(..usize::from(class)),
        CLASS_BYTES => {
            let mut j = 0;
            while j < rest.len() {
                if rest[j] == 0 {
                    match *rest.get(j + 1)? {
                        0 => return Some(&rest[..j + 2]),
                        0xFF => {
                            j += 2;
                            continue;
                        }
                        _ => return None,
                    }
                }
                j += 1;
            }
            None
        }
        CLASS_WHOLE => Some(rest),
        _ => None,
    }
}

/// Whether two strings are equal, in a `const` context (for compile-time
/// checks of literals that attributes force on the SDK).
pub const fn str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_examples() {
        assert_eq!(
            partition_key(b"acct\0\x08\0\0\0\0\0\0\0\x05"),
            b"\0\0\0\0\0\0\0\x05"
        );
        assert_eq!(partition_key(b"kv\0\x80a\0\xffb\0\0xyz"), b"a\0\xffb\0\0");
        assert_eq!(partition_key(b"t\0\xffabc"), b"abc");
        assert_eq!(partition_key(b"hostile/huge"), b"hostile/huge");
        assert_eq!(partition_key(b"t\0\x7fabc"), b"t\0\x7fabc");
    }

    #[test]
    fn names() {
        assert!(is_valid_name("transfer"));
        assert!(is_valid_name("_x1"));
        assert!(!is_valid_name("1x"));
        assert!(!is_valid_name(""));
        assert!(!is_valid_name("Transfer"));
        assert!(is_valid_name(
            core::str::from_utf8(&[b'a'; NAME_BYTES_MAX]).unwrap()
        ));
        assert!(!is_valid_name(
            core::str::from_utf8(&[b'a'; NAME_BYTES_MAX + 1]).unwrap()
        ));
    }

    #[test]
    fn every_import_has_one_type() {
        for (i, (name, ty)) in HOST_IMPORTS.iter().enumerate() {
            assert_eq!(host_import(name), Some(*ty));
            assert!(HOST_IMPORTS[..i].iter().all(|(other, _)| other != name));
        }
        assert_eq!(host_import("memory"), None);
        assert!(str_eq(HOST_MODULE, "ordo") && !str_eq(HOST_MODULE, "ordo "));
    }
}
