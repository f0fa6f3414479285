// SPDX-License-Identifier: GPL-2.0

//! The device: one open file of `/dev/memkit-rmem`, its region, the ioctls and the
//! mmap.

use super::*;

/// The state of one open file of `/dev/memkit-rmem`: its region, once configured.
#[pin_data(PinnedDrop)]
pub(crate) struct RmemDevice {
    #[pin]
    region: Mutex<Option<Arc<Region>>>,
}

#[pinned_drop]
impl PinnedDrop for RmemDevice {
    fn drop(self: Pin<&mut Self>) {
        if let Some(r) = self.region.lock().take() {
            r.shut_down();
        }
    }
}

impl RmemDevice {
    fn configure(&self, file: &File, arg: usize) -> Result<isize> {
        let mut req = uapi::read::<abi::RmemConfig>(arg)?;
        let cfg = logic::check_config(&req).map_err(|e| Error::from_errno(-e))?;
        if self.region.lock().is_some() {
            return Err(EEXIST);
        }
        let mapping = Mapping(crate::edge::file_mapping(file).ok_or(EINVAL)?);
        let region = Region::new(cfg, mapping)?;
        req.mmap_offset = region.base << PAGE_SHIFT;
        // Written back before the region is kept (a bad pointer leaves no region).
        uapi::write(arg, req.size, &req)?;
        let mut guard = self.region.lock();
        if guard.is_some() {
            return Err(EEXIST);
        }
        *guard = Some(region);
        Ok(0)
    }

    /// The file's region, if it is agent-backed (`read` and `write` serve only those).
    fn agent_region(&self) -> Result<Arc<Region>> {
        let region = self.region.lock().clone().ok_or(EINVAL)?;
        if region.cfg.backend != logic::Backend::Agent {
            return Err(EINVAL);
        }
        Ok(region)
    }

    fn stats(&self, arg: usize) -> Result<isize> {
        let req = uapi::read::<abi::RmemStats>(arg)?;
        let mut out = abi::RmemStats {
            size: req.size,
            flags: req.flags,
            ..Default::default()
        };
        if req.flags & abi::RMEM_STATS_GLOBAL != 0 {
            // The module's totals count other users' regions.
            if !crate::edge::capable_sys_admin() {
                return Err(EPERM);
            }
            GLOBAL.snapshot(&mut out);
            out.bytes = GLOBAL.regions.load(Ordering::Relaxed);
        } else {
            let region = self.region.lock().clone().ok_or(EINVAL)?;
            region.stats(&mut out);
        }
        uapi::write(arg, req.size, &out)?;
        Ok(0)
    }
}

#[vtable]
impl MiscDevice for RmemDevice {
    type Ptr = Pin<KBox<Self>>;

    fn open(_file: &File, _misc: &MiscDeviceRegistration<Self>) -> Result<Pin<KBox<Self>>> {
        KBox::try_pin_init(
            try_pin_init!(RmemDevice {
                region <- new_mutex!(None),
            }),
            GFP_KERNEL_ACCOUNT,
        )
    }

    fn mmap(me: Pin<&RmemDevice>, _file: &File, vma: &VmaNew) -> Result {
        let guard = me.region.lock();
        let r = guard.as_ref().ok_or(EINVAL)?;
        crate::edge::map_region_window(vma, r.base, r.cfg.pages)?;
        // A core dump would read (and so fetch) every page of the region.
        vma.set_dontdump();
        // The region lives as long as the file, which every VMA of it holds.
        fault::RMEM_VM_OPS.install(vma, Arc::as_ptr(r).cast());
        Ok(())
    }

    fn read_iter(kiocb: Kiocb<'_, Self::Ptr>, iov: &mut IovIterDest<'_>) -> Result<usize> {
        let region = kiocb.file().agent_region()?;
        // SAFETY: the kiocb of this call.
        let nowait = unsafe { memkit_kiocb_nowait(kiocb.as_raw()) };
        region.agent_read(iov, nowait)
    }

    fn write_iter(kiocb: Kiocb<'_, Self::Ptr>, iov: &mut IovIterSource<'_>) -> Result<usize> {
        kiocb.file().agent_region()?.agent_write(iov)
    }

    fn ioctl(me: Pin<&RmemDevice>, file: &File, cmd: u32, arg: usize) -> Result<isize> {
        match abi::Command::decode(cmd) {
            Some(abi::Command::Version) => crate::uapi::version(
                arg,
                abi::DEV_RMEM,
                abi::FEAT_RMEM_PREFETCH | abi::FEAT_FDINFO,
            ),
            Some(abi::Command::RmemConfigure) => me.configure(file, arg),
            Some(abi::Command::RmemStats) => me.stats(arg),
            _ => Err(ENOTTY),
        }
    }

    /// `/proc/PID/fdinfo/FD`: the file's region (`abi::fdinfo`, what `memkit list`
    /// reads).
    fn show_fdinfo(me: Pin<&RmemDevice>, m: &SeqFile, _file: &File) {
        use abi::fdinfo as key;
        seq_print!(m, "{}:\trmem\n", key::DEVICE);
        let Some(r) = me.region.lock().clone() else {
            seq_print!(m, "{}:\tnone\n", key::REGION);
            return;
        };
        let mut s = abi::RmemStats::default();
        r.stats(&mut s);
        seq_print!(
            m,
            "{}:\t{}\n",
            key::REGION,
            r.base >> RegionId::WINDOW_SHIFT
        );
        seq_print!(m, "{}:\t{:#x}\n", key::MMAP_OFFSET, r.base << PAGE_SHIFT);
        seq_print!(m, "{}:\t{}\n", key::BYTES, s.bytes);
        seq_print!(m, "{}:\t{}\n", key::BACKEND, r.cfg.backend.name());
        seq_print!(m, "{}:\t{}\n", key::POLICY, r.cfg.policy.name());
        seq_print!(m, "{}:\t{}\n", key::BUDGET, s.budget);
        seq_print!(m, "{}:\t{}\n", key::LOCAL, s.local);
        seq_print!(m, "{}:\t{}\n", key::FAULTS_SYNC, s.faults_sync);
        seq_print!(m, "{}:\t{}\n", key::PREFETCHES, s.prefetches);
    }
}
