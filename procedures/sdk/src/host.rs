//! The host imports of docs/ABI.md (import module `"ordo"`), and native
//! stand-ins that panic so the SDK still compiles (and its pure parts can be
//! unit-tested) on other targets.
//!
//! Pointers are `*const u8`/`*mut u8`, which are `i32` on wasm32.

// The attribute below needs a literal; this keeps it the engine's.
const _: () = assert!(ordo_schema::abi::str_eq(
    ordo_schema::abi::HOST_MODULE,
    "ordo"
));

// The names of the functions below are the engine's import names
// (`ordo_schema::abi::import`); a module importing anything else is refused at
// deploy, which every example module's deploy in the tests checks.
#[cfg(target_arch = "wasm32")]
mod imp {
    #[link(wasm_import_module = "ordo")]
    unsafe extern "C" {
        pub fn get(key_ptr: *const u8, key_len: i32, dst_ptr: *mut u8, dst_cap: i32) -> i64;
        pub fn put(key_ptr: *const u8, key_len: i32, val_ptr: *const u8, val_len: i32);
        pub fn delete(key_ptr: *const u8, key_len: i32);
        pub fn scan(
            start_ptr: *const u8,
            start_len: i32,
            end_ptr: *const u8,
            end_len: i32,
            limit: i32,
            dst_ptr: *mut u8,
            dst_cap: i32,
        ) -> i64;
        pub fn set_result(ptr: *const u8, len: i32);
        pub fn abort(ptr: *const u8, len: i32) -> !;
        pub fn panic(ptr: *const u8, len: i32) -> !;
        pub fn log(level: i32, ptr: *const u8, len: i32);
        pub fn sequence() -> i64;
        pub fn now_ms() -> i64;
        pub fn random_seed() -> i64;
    }
}

#[cfg(not(target_arch = "wasm32"))]
#[allow(clippy::missing_safety_doc)]
mod imp {
    fn unavailable(name: &str) -> ! {
        unimplemented!(
            "the ordo host import `{name}` only exists inside the engine: build procedures for wasm32-unknown-unknown"
        )
    }

    pub unsafe fn get(_: *const u8, _: i32, _: *mut u8, _: i32) -> i64 {
        unavailable(ordo_schema::abi::import::GET)
    }
    pub unsafe fn put(_: *const u8, _: i32, _: *const u8, _: i32) {
        unavailable(ordo_schema::abi::import::PUT)
    }
    pub unsafe fn delete(_: *const u8, _: i32) {
        unavailable(ordo_schema::abi::import::DELETE)
    }
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn scan(
        _: *const u8,
        _: i32,
        _: *const u8,
        _: i32,
        _: i32,
        _: *mut u8,
        _: i32,
    ) -> i64 {
        unavailable(ordo_schema::abi::import::SCAN)
    }
    pub unsafe fn set_result(_: *const u8, _: i32) {
        unavailable(ordo_schema::abi::import::SET_RESULT)
    }
    pub unsafe fn abort(_: *const u8, _: i32) -> ! {
        unavailable(ordo_schema::abi::import::ABORT)
    }
    pub unsafe fn panic(_: *const u8, _: i32) -> ! {
        unavailable(ordo_schema::abi::import::PANIC)
    }
    /// Off the engine (a procedure's native unit tests), log lines go to
    /// standard error.
    pub unsafe fn log(level: i32, ptr: *const u8, len: i32) {
        // SAFETY: the caller passes a valid UTF-8 slice of `len` bytes.
        let text = unsafe { core::slice::from_raw_parts(ptr, len as usize) };
        std::eprintln!("[ordo log {level}] {}", String::from_utf8_lossy(text));
    }
    pub unsafe fn sequence() -> i64 {
        unavailable(ordo_schema::abi::import::SEQUENCE)
    }
    pub unsafe fn now_ms() -> i64 {
        unavailable(ordo_schema::abi::import::NOW_MS)
    }
    pub unsafe fn random_seed() -> i64 {
        unavailable(ordo_schema::abi::import::RANDOM_SEED)
    }
}

pub(crate) use imp::*;

/// A length as the ABI's `i32`. Nothing in a 32-bit address space that the
/// host would accept is longer than `i32::MAX`.
#[inline]
pub(crate) fn len_i32(len: usize) -> i32 {
    match i32::try_from(len) {
        Ok(len) => len,
        Err(_) => crate::abort(format_args!(
            "buffer of {len} bytes is too long for the host ABI"
        )),
    }
}
