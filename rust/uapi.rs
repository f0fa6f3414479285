// SPDX-License-Identifier: GPL-2.0

//! Copies ABI structs between userspace and the module.
//!
//! The rules (size versioning, zero tail, padding, flags) are decided by
//! [`crate::pure::abi`]; this file only moves the bytes. A struct is read and checked
//! completely before any command acts on it, so a refused call changes nothing.

use crate::pure::abi::{
    self,
    UapiError,
    UapiStruct, //
};
use kernel::{
    prelude::*,
    uaccess::{
        UserPtr,
        UserSlice, //
    },
};

/// The errno of a refused struct.
fn to_error(e: UapiError) -> Error {
    Error::from_errno(-e.errno())
}

/// Bytes of the stack buffer for structs that fit it (every struct but
/// `JournalStatus`): zeroing [`abi::STRUCT_KSIZE_MAX`] bytes on every ioctl costs more
/// than the rest of a small ioctl's copying (a `rep stosb` of 512 bytes, twice per
/// transaction; under QEMU TCG about 5 of a 64-byte transaction's 20 us).
const SMALL: usize = 64;

/// Reads a size-versioned struct `T` from the user address `arg`, zero-extended to
/// the module's size; its `size` field keeps the caller's size.
///
/// Fails with `EFAULT` for an unreadable address, and with the errno of
/// [`UapiError`] for a struct that breaks the ABI rules.
pub(crate) fn read<T: UapiStruct>(arg: usize) -> Result<T> {
    const { assert!(T::SIZE <= abi::STRUCT_KSIZE_MAX) };
    if T::SIZE <= SMALL {
        read_in::<T, SMALL>(arg)
    } else {
        read_in::<T, { abi::STRUCT_KSIZE_MAX }>(arg)
    }
}

/// [`read`] through a buffer of `N >= T::SIZE` bytes.
fn read_in<T: UapiStruct, const N: usize>(arg: usize) -> Result<T> {
    let ptr = UserPtr::from_addr(arg);

    let mut size = [0u8; 4];
    UserSlice::new(ptr, size.len())
        .reader()
        .read_slice(&mut size)?;
    let plan = abi::plan_copy_in::<T>(u32::from_ne_bytes(size)).map_err(to_error)?;
    let user_size = plan.copy + plan.tail;

    let mut reader = UserSlice::new(ptr, user_size).reader();
    let mut buf = [0u8; N];
    reader.read_slice(buf.get_mut(..plan.copy).ok_or(EINVAL)?)?;

    // The bytes past the module's struct must all be zero.
    let mut chunk = [0u8; 64];
    let mut tail = plan.tail;
    while tail > 0 {
        let n = tail.min(chunk.len());
        reader.read_slice(&mut chunk[..n])?;
        if chunk[..n].iter().any(|&b| b != 0) {
            return Err(to_error(UapiError::NonZeroTail));
        }
        tail -= n;
    }

    let value = T::decode(buf.get(..T::SIZE).ok_or(EINVAL)?);
    value.check().map_err(to_error)?;
    Ok(value)
}

/// Writes `value` back to the user address `arg`, truncated to the caller's size
/// `user_size` (the `size` field of the struct [`read`] returned).
pub(crate) fn write<T: UapiStruct>(arg: usize, user_size: u32, value: &T) -> Result {
    const { assert!(T::SIZE <= abi::STRUCT_KSIZE_MAX) };
    if T::SIZE <= SMALL {
        write_in::<T, SMALL>(arg, user_size, value)
    } else {
        write_in::<T, { abi::STRUCT_KSIZE_MAX }>(arg, user_size, value)
    }
}

/// [`write`] through a buffer of `N >= T::SIZE` bytes.
fn write_in<T: UapiStruct, const N: usize>(arg: usize, user_size: u32, value: &T) -> Result {
    let n = T::SIZE.min(user_size.try_into().unwrap_or(usize::MAX));
    let mut buf = [0u8; N];
    let encoded = buf.get_mut(..T::SIZE).ok_or(EINVAL)?;
    value.encode(encoded);
    UserSlice::new(UserPtr::from_addr(arg), n)
        .writer()
        .write_slice(encoded.get(..n).ok_or(EINVAL)?)
}

/// `MEMKIT_IOC_VERSION`, the same for every device: ABI version, device id and the
/// feature bits of what `device` implements.
pub(crate) fn version(arg: usize, device: u32, features: u64) -> Result<isize> {
    let req = read::<abi::Version>(arg)?;
    let out = abi::Version {
        // Lossless: at most `Version::SIZE`.
        size: req.size.min(abi::Version::SIZE as u32),
        flags: 0,
        abi_major: abi::ABI_MAJOR,
        abi_minor: abi::ABI_MINOR,
        features,
        device,
        pad: 0,
    };
    write(arg, req.size, &out)?;
    Ok(0)
}
