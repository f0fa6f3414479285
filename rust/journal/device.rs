// SPDX-License-Identifier: GPL-2.0

//! The device: one open file of `/dev/memkit-journal`, its ioctls, `read` and fdinfo.

use super::*;

/// An open file of `/dev/memkit-journal`.
#[pin_data]
pub(crate) struct JournalDevice {
    shared: Arc<Shared>,
    /// The buffers of the file's last transaction, for its next one.
    #[pin]
    spare: Mutex<Option<TxBuf>>,
}

impl JournalDevice {
    fn ioctl_attach(&self, arg: usize) -> Result<isize> {
        if !edge::capable_sys_admin() {
            return Err(EPERM);
        }
        let req = uapi::read::<abi::JournalAttach>(arg)?;
        let mut buf = KVec::from_elem(0u8, PATH_MAX, GFP_KERNEL)?;
        let path = UserSlice::new(UserPtr::from_addr(req.path as usize), PATH_MAX)
            .reader()
            .strcpy_into_buf(&mut buf)?;
        if path.to_bytes().len() >= PATH_MAX - 1 {
            return Err(ENAMETOOLONG);
        }
        let format = (req.flags & abi::JOURNAL_ATTACH_FORMAT != 0).then(|| {
            let count = if req.mj_count == 0 {
                DEFAULT_MJ_COUNT
            } else {
                req.mj_count
            };
            let size = if req.mj_size == 0 {
                DEFAULT_MJ_SIZE
            } else {
                req.mj_size
            };
            (count, size)
        });
        self.shared.attach(path, format)?;
        Ok(0)
    }

    fn ioctl_detach(&self, arg: usize) -> Result<isize> {
        if !edge::capable_sys_admin() {
            return Err(EPERM);
        }
        uapi::read::<abi::JournalDetach>(arg)?;
        self.shared.detach()?;
        Ok(0)
    }

    fn ioctl_status(&self, arg: usize) -> Result<isize> {
        let req = uapi::read::<abi::JournalStatus>(arg)?;
        let mut out = self.shared.status();
        out.size = req.size.min(abi::JournalStatus::SIZE as u32);
        uapi::write(arg, req.size, &out)?;
        Ok(0)
    }

    fn ioctl_tx(&self, arg: usize) -> Result<isize> {
        let req = uapi::read::<abi::JournalTx>(arg)?;
        if req.nr_ranges == 0 {
            return Err(EINVAL);
        }
        if req.nr_ranges > format::TX_RANGES_MAX {
            return Err(E2BIG);
        }
        // This file's buffers from its last transaction (fresh ones if another
        // transaction on this file holds them now).
        let mut tx = self.spare.lock().take().unwrap_or_default();
        let mut checked = Checked::default();
        let (res, tx) = match tx.copy_in(&req, |spans| {
            checked = self.shared.check(spans)?;
            Ok(checked.uuid)
        }) {
            Ok(()) => self.shared.submit(tx, checked),
            Err(e) => (Err(e), tx),
        };
        if tx.capacity() <= SPARE_MAX {
            *self.spare.lock() = Some(tx);
        }
        let out = abi::JournalTx {
            commit_id: res?,
            size: req.size.min(abi::JournalTx::SIZE as u32),
            ..req
        };
        uapi::write(arg, req.size, &out)?;
        Ok(0)
    }
}

#[vtable]
impl MiscDevice for JournalDevice {
    type Ptr = Pin<KBox<Self>>;

    fn open(_file: &File, _misc: &MiscDeviceRegistration<Self>) -> Result<Pin<KBox<Self>>> {
        let shared = JOURNAL.lock().as_ref().ok_or(ENODEV)?.clone();
        KBox::try_pin_init(
            try_pin_init!(JournalDevice {
                shared,
                spare <- new_mutex!(None),
            }),
            GFP_KERNEL,
        )
    }

    fn ioctl(me: Pin<&JournalDevice>, file: &File, cmd: u32, arg: usize) -> Result<isize> {
        // What changes the medium needs a descriptor open for writing, as write(2)
        // (and the block layer's BLKDISCARD) do.
        let writable = || {
            if file.flags() & O_ACCMODE == O_RDONLY {
                Err(EBADF)
            } else {
                Ok(())
            }
        };
        match abi::Command::decode(cmd) {
            Some(abi::Command::Version) => uapi::version(
                arg,
                abi::DEV_JOURNAL,
                abi::FEAT_JOURNAL_TX | abi::FEAT_FDINFO,
            ),
            Some(abi::Command::JournalAttach) => writable().and_then(|()| me.ioctl_attach(arg)),
            Some(abi::Command::JournalDetach) => writable().and_then(|()| me.ioctl_detach(arg)),
            Some(abi::Command::JournalStatus) => me.ioctl_status(arg),
            Some(abi::Command::JournalTx) => writable().and_then(|()| me.ioctl_tx(arg)),
            _ => Err(ENOTTY),
        }
    }

    fn read_iter(mut kiocb: Kiocb<'_, Self::Ptr>, iov: &mut IovIterDest<'_>) -> Result<usize> {
        let pos = u64::try_from(kiocb.ki_pos()).map_err(|_| EINVAL)?;
        let n = kiocb.file().shared.read(pos, iov)?;
        *kiocb.ki_pos_mut() += n as i64;
        Ok(n)
    }

    /// `/proc/PID/fdinfo/FD`: the attached device (`abi::fdinfo`, what `memkit list`
    /// reads).
    fn show_fdinfo(me: Pin<&JournalDevice>, m: &SeqFile, _file: &File) {
        use abi::fdinfo as key;
        seq_print!(m, "{}:\tjournal\n", key::DEVICE);
        match me.shared.device() {
            Some((major, minor)) => seq_print!(m, "{}:\t{major}:{minor}\n", key::JOURNAL_DEV),
            None => seq_print!(m, "{}:\tnone\n", key::JOURNAL_DEV),
        }
    }
}
