//! Support for the code `#[procedure]` generates. Not a stable API.

use alloc::string::ToString;
use alloc::vec::Vec;
use core::cell::RefCell;
use core::fmt::Display;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::host;

pub use crate::partition::{PartitionSet, Partitions};
pub use alloc::string::String;
pub use alloc::vec;
/// The engine's ABI values, which the generated code checks its literals
/// against at compile time.
pub use ordo_schema::abi;
pub use serde;

use core::marker::PhantomData;
use ordo_schema::{ProcedureSchema, Registry, Schema, Shape, TableSchema};

use crate::key::EncodeKey;
use crate::table::Table;

/// Status codes of `ordo_proc_*` and `ordo_keys_*` (docs/ABI.md).
pub use ordo_schema::abi::{STATUS_ABORTED, STATUS_BAD_ARGUMENTS, STATUS_OK};

/// How the arguments (and so the result) are encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    Postcard,
    Json,
}

thread_local! {
    /// The argument buffer handed out by `ordo_args_buffer`. Its length is
    /// the largest size ever asked for; growing zero-fills only the new part.
    static ARGS: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Returns a pointer to a guest buffer of at least `len` bytes, into which
/// the host copies a call's arguments (docs/ABI.md). The buffer is reused
/// from call to call.
#[unsafe(no_mangle)]
pub extern "C" fn ordo_args_buffer(len: i32) -> i32 {
    let len = usize::try_from(len).unwrap_or(0);
    ARGS.with_borrow_mut(|buf| {
        if buf.len() < len {
            buf.resize(len, 0);
        }
        buf.as_mut_ptr() as usize as i32
    })
}

/// Called first by every generated export: resets per-call state, and
/// (once per instance) installs the panic hook.
pub fn enter() {
    crate::context::reset_random();
    #[cfg(target_arch = "wasm32")]
    install_panic_hook();
}

/// Hands a panic's place and message to the host (`ordo.panic`, which
/// aborts the transaction with kind `trap` and that text) instead of
/// trapping silently. The message is deterministic: it comes from the
/// module's own code and data.
#[cfg(target_arch = "wasm32")]
fn install_panic_hook() {
    use core::sync::atomic::{AtomicBool, Ordering};
    static INSTALLED: AtomicBool = AtomicBool::new(false);
    if INSTALLED.swap(true, Ordering::Relaxed) {
        return;
    }
    std::panic::set_hook(alloc::boxed::Box::new(|info| {
        let place = info
            .location()
            .map(|l| alloc::format!("{}:{}:{}", l.file(), l.line(), l.column()))
            .unwrap_or_else(|| String::from("an unknown place"));
        let payload = info.payload();
        let message = payload
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("(a panic without a message)");
        let text = alloc::format!("{place}: {message}");
        // SAFETY: the slice is valid for reads of its length; `panic`
        // never returns.
        unsafe { host::panic(text.as_ptr(), host::len_i32(text.len())) }
    }));
}

/// Passes the transaction's result (or abort reason) to the host.
pub fn set_result(bytes: &[u8]) {
    // SAFETY: the slice is valid for reads of its length.
    unsafe { host::set_result(bytes.as_ptr(), host::len_i32(bytes.len())) }
}

/// Decodes the arguments the host copied into the argument buffer. On
/// failure the reason has been passed to `set_result` and the `Err` holds
/// the status to return.
pub fn decode_args<T: DeserializeOwned>(
    args_len: i32,
    encoding: i32,
) -> Result<(T, Encoding), i32> {
    let encoding = match encoding {
        ordo_schema::abi::ENCODING_POSTCARD => Encoding::Postcard,
        ordo_schema::abi::ENCODING_JSON => Encoding::Json,
        other => {
            return Err(bad_arguments(format_args!(
                "unknown argument encoding {other}"
            )));
        }
    };
    let decoded = ARGS.with_borrow(|buf| {
        let Some(bytes) = usize::try_from(args_len).ok().and_then(|n| buf.get(..n)) else {
            return Err(format!(
                "argument length {args_len} is outside the argument buffer ({} bytes)",
                buf.len()
            ));
        };
        match encoding {
            Encoding::Postcard => match postcard::take_from_bytes::<T>(bytes) {
                Ok((value, [])) => Ok(value),
                Ok((_, rest)) => Err(format!(
                    "postcard arguments have {} trailing bytes",
                    rest.len()
                )),
                Err(e) => Err(format!("postcard arguments do not decode: {e}")),
            },
            // Only an object keyed by parameter name: serde would also map
            // an array positionally, which silently breaks callers when a
            // procedure's parameters are reordered.
            Encoding::Json if bytes.trim_ascii_start().first() != Some(&b'{') => Err(
                "JSON arguments do not decode: expected an object keyed by parameter name, e.g. {\"id\": 1}"
                    .to_string(),
            ),
            Encoding::Json => serde_json::from_slice::<T>(bytes)
                .map_err(|e| format!("JSON arguments do not decode: {e}")),
        }
    });
    match decoded {
        Ok(value) => Ok((value, encoding)),
        Err(reason) => Err(bad_arguments(reason)),
    }
}

fn bad_arguments(reason: impl Display) -> i32 {
    set_result(reason.to_string().as_bytes());
    STATUS_BAD_ARGUMENTS
}

/// Encodes a procedure's return value as its result.
pub fn finish<T: Serialize + ?Sized>(value: &T, encoding: Encoding) -> i32 {
    let encoded = match encoding {
        Encoding::Postcard => postcard::to_allocvec(value).map_err(|e| e.to_string()),
        Encoding::Json => serde_json::to_vec(value).map_err(|e| e.to_string()),
    };
    match encoded {
        Ok(bytes) => {
            set_result(&bytes);
            STATUS_OK
        }
        Err(e) => {
            let reason: String = format!("the procedure's result could not be encoded: {e}");
            set_result(reason.as_bytes());
            STATUS_ABORTED
        }
    }
}

/// A procedure's return value, borrowed, for choosing how the call ends.
///
/// The generated code calls `(&&Returned(&value)).__ordo_kind()` with
/// [`ReturnsResult`] and [`ReturnsValue`] in scope. Method lookup tries
/// the receiver `&&Returned<R>` first, where only [`ReturnsResult`] (on
/// `&Returned<Result<T, E>>`, taking `&self`) can apply, and only then its
/// autoref, where [`ReturnsValue`] (on `&&Returned<R>`) applies to any
/// `R`. Procedures are never generic, so `R` is always concrete and the
/// choice is made on the type itself: a `Result` behind any alias gets
/// [`ResultTag`], whose `Err` aborts. Neither impl has bounds, so a
/// `Result` whose `T` is not `Serialize` or whose `E` is not `Display` is
/// a compile error in [`ResultTag::finish`], never a fallback to
/// committing the `Result` as a value.
pub struct Returned<'a, R>(pub &'a R);

/// How a procedure returning `Result` ends: `Err` aborts.
pub struct ResultTag;

/// How a procedure returning anything else ends: the value is the result.
pub struct ValueTag;

/// Picks [`ResultTag`] for a `Result`; see [`Returned`].
pub trait ReturnsResult {
    fn __ordo_kind(&self) -> ResultTag {
        ResultTag
    }
}

impl<T, E> ReturnsResult for &Returned<'_, Result<T, E>> {}

/// Picks [`ValueTag`] for anything that is not a `Result`; see [`Returned`].
pub trait ReturnsValue {
    fn __ordo_kind(&self) -> ValueTag {
        ValueTag
    }
}

impl<R> ReturnsValue for &&Returned<'_, R> {}

impl ResultTag {
    /// `Ok(value)` is the result; `Err(e)` aborts the transaction with
    /// `e.to_string()` as the reason, dropping its writes.
    pub fn finish<T: Serialize, E: Display>(
        self,
        result: &Result<T, E>,
        encoding: Encoding,
    ) -> i32 {
        match result {
            Ok(value) => finish(value, encoding),
            Err(e) => {
                set_result(e.to_string().as_bytes());
                STATUS_ABORTED
            }
        }
    }
}

impl ValueTag {
    /// The value is the result.
    pub fn finish<T: Serialize>(self, value: &T, encoding: Encoding) -> i32 {
        finish(value, encoding)
    }
}

/// Implemented only by `core::result::Result`. The generated code
/// requires it of a return type the macro sees spelled `Result<...>`, so
/// that a type of one's own named `Result` is a compile error rather than
/// a value committed whatever it holds.
#[diagnostic::on_unimplemented(
    message = "the procedure's return type `{Self}` is named `Result` but is not `core::result::Result`",
    label = "returning `Err` aborts a transaction only for `core::result::Result` (directly or through a type alias)",
    note = "return `core::result::Result<T, E>` or an alias of it (`type Res<T> = Result<T, MyError>;`), or rename this type if its values should always commit"
)]
pub trait CoreResult {}

impl<T, E> CoreResult for Result<T, E> {}

/// Checks at compile time that `R` is `core::result::Result`.
pub fn expect_core_result<R: CoreResult>(_: &R) {}

/// Ends an `ordo_keys_*` export: hands the declared partition keys to the
/// host as the result ([`PartitionSet::encode`]'s list), or aborts with the
/// reason the declaration failed.
pub fn finish_partitions(set: PartitionSet) -> i32 {
    match set.encode() {
        Ok(bytes) => {
            set_result(&bytes);
            STATUS_OK
        }
        Err(reason) => {
            set_result(reason.as_bytes());
            STATUS_ABORTED
        }
    }
}

/// Ends an `ordo_schema_*` export: hands the procedure's schema to the host.
pub fn finish_schema(schema: &ProcedureSchema) -> i32 {
    set_result(&ordo_schema::encode_schema(schema));
    STATUS_OK
}

/// Ends an `ordo_table_*` export: hands the table's schema to the host.
pub fn finish_table<K: EncodeKey + Schema, V: Schema>(table: &Table<K, V>, doc: &str) -> i32 {
    let mut types = Registry::new();
    let key = types.shape_of::<K>();
    let value = types.shape_of::<V>();
    let schema = TableSchema {
        name: String::from(table.name()),
        doc: String::from(doc),
        key,
        value,
        types,
    };
    set_result(&ordo_schema::encode_schema(&schema));
    STATUS_OK
}

/// The schema of a procedure's result, named by its return type: for a
/// `Result<T, E>` (through any alias) the schema of `T`, else of the type
/// itself. `#[procedure]` calls `(&&ReturnShape::<R>::new()).shape(..)`:
/// method lookup tries the `Result` impl (on `&&ReturnShape`) first, so
/// an aliased `Result` is recognised by its type, not its name.
pub struct ReturnShape<R: ?Sized>(PhantomData<fn() -> R>);

impl<R: ?Sized> ReturnShape<R> {
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        ReturnShape(PhantomData)
    }
}

pub trait ShapeOfResult {
    fn shape(&self, types: &mut Registry) -> Shape;
}

impl<T: Schema, E> ShapeOfResult for &ReturnShape<Result<T, E>> {
    fn shape(&self, types: &mut Registry) -> Shape {
        types.shape_of::<T>()
    }
}

pub trait ShapeOfValue {
    fn shape(&self, types: &mut Registry) -> Shape;
}

impl<T: Schema + ?Sized> ShapeOfValue for ReturnShape<T> {
    fn shape(&self, types: &mut Registry) -> Shape {
        types.shape_of::<T>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result_tag(_: ResultTag) {}
    fn value_tag(_: ValueTag) {}

    type Res<T> = Result<T, String>;
    mod nested {
        pub type Outcome = core::result::Result<u64, core::fmt::Error>;
    }

    /// The tag is chosen by the type, however it is spelled.
    #[test]
    fn results_behind_aliases_get_the_result_tag() {
        let unit: Res<()> = Err("no".into());
        result_tag((&&Returned(&unit)).__ordo_kind());
        let nested: nested::Outcome = Ok(1);
        result_tag((&&Returned(&nested)).__ordo_kind());
        let plain: Result<i64, &str> = Ok(1);
        result_tag((&&Returned(&plain)).__ordo_kind());
        // Not a `Result` at the top: a value, even if a `Result` is inside.
        value_tag((&&Returned(&Some(plain))).__ordo_kind());
        value_tag((&&Returned(&7u64)).__ordo_kind());
        value_tag((&&Returned(&String::new())).__ordo_kind());
        expect_core_result(&unit);
    }
}
