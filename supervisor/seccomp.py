"""The seccomp filter bwrap installs in every sandbox: the kernel interfaces a classifier never
needs, which are the ones kernel exploits go through, answer EPERM. Built with libseccomp (the
system's libseccomp2, through ctypes) into a BPF program once per process; bwrap reads it from a
file descriptor (`--seccomp FD`) for each worker.

A denylist, not an allowlist: TensorFlow, LiteRT, numpy and Python use hundreds of syscalls
that differ between versions, and one missing from an allowlist would crash a worker in ways
no test predicts. New namespaces (a nested user namespace above all) are denied here, with
clone's flags checked: bwrap's own --disable-userns writes /proc/sys, which a container keeps
read-only. Sockets are limited to the address families a worker may use (SOCKET_FAMILIES)."""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
from functools import cache

DENIED = (
    # other processes' memory
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp",
    # the kernel's more exposed subsystems
    "bpf", "perf_event_open", "userfaultfd", "io_uring_setup", "io_uring_enter",
    "io_uring_register", "keyctl", "add_key", "request_key", "fanotify_init",
    "open_by_handle_at", "name_to_handle_at", "lookup_dcookie",
    # namespaces, mounts and the machine
    "unshare", "setns", "mount", "umount2", "pivot_root", "chroot", "move_mount",
    "open_tree", "fsopen", "fsmount", "fspick", "mount_setattr",
    "init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load",
    "reboot", "swapon", "swapoff", "acct", "quotactl", "syslog", "vhangup",
    "settimeofday", "clock_settime", "adjtimex", "sethostname", "setdomainname",
    "iopl", "ioperm", "uselib", "personality",
)  # fmt: skip
# clone3 takes its flags in memory, where a filter cannot look: ENOSYS makes glibc use clone.
ENOSYS_CALLS = ("clone3",)

# clone(2) with any of these flags makes a new namespace.
NAMESPACE_FLAGS = (
    0x00020000,  # CLONE_NEWNS
    0x02000000,  # CLONE_NEWCGROUP
    0x04000000,  # CLONE_NEWUTS
    0x08000000,  # CLONE_NEWIPC
    0x10000000,  # CLONE_NEWUSER
    0x20000000,  # CLONE_NEWPID
    0x40000000,  # CLONE_NEWNET
)

# socket(2) and socketpair(2) for these address families only. The network namespace
# isolates IP; AF_VSOCK reaches the hypervisor's host whatever the namespace, and the rarer
# families (AF_ALG, AF_PACKET, AF_RDS, AF_TIPC, ...) are where socket exploits live.
SOCKET_FAMILIES = (
    1,  # AF_UNIX
    2,  # AF_INET
    10,  # AF_INET6
    16,  # AF_NETLINK (glibc asks it for the interfaces' addresses)
)
FAMILY_LIMIT = 64  # AF_MAX is 46 today: every family from here up is denied at once

SCMP_ACT_ALLOW = 0x7FFF0000
SCMP_CMP_EQ = 4
SCMP_CMP_GE = 5
SCMP_CMP_MASKED_EQ = 7


class _ArgumentTest(ctypes.Structure):  # struct scmp_arg_cmp
    _fields_ = [
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    ]


def _errno_action(code: int) -> int:
    return 0x00050000 | (code & 0xFFFF)  # SCMP_ACT_ERRNO


class SeccompUnavailable(Exception):
    pass


@cache
def program() -> bytes:
    """The filter as a BPF program for this machine's architecture."""
    name = ctypes.util.find_library("seccomp")
    if name is None:
        raise SeccompUnavailable("libseccomp is not installed (Debian: libseccomp2)")
    lib = ctypes.CDLL(name, use_errno=True)
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_rule_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint]
    lib.seccomp_rule_add_array.argtypes = [
        ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint,
        ctypes.POINTER(_ArgumentTest),
    ]  # fmt: skip
    lib.seccomp_export_bpf.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.seccomp_release.argtypes = [ctypes.c_void_p]
    context = lib.seccomp_init(SCMP_ACT_ALLOW)
    if not context:
        raise SeccompUnavailable("seccomp_init failed")
    try:
        rules = [(n, _errno_action(errno.EPERM)) for n in DENIED]
        rules += [(n, _errno_action(errno.ENOSYS)) for n in ENOSYS_CALLS]
        for syscall, action in rules:
            number = lib.seccomp_syscall_resolve_name(syscall.encode())
            if number < 0:  # not on this architecture (iopl on arm64, say)
                continue
            if lib.seccomp_rule_add(context, action, number, 0) != 0:
                raise SeccompUnavailable(f"seccomp_rule_add({syscall}) failed")
        clone = lib.seccomp_syscall_resolve_name(b"clone")
        for flag in NAMESPACE_FLAGS:  # clone's flags are its first argument here
            test = _ArgumentTest(0, SCMP_CMP_MASKED_EQ, flag, flag)
            if lib.seccomp_rule_add_array(context, _errno_action(errno.EPERM), clone, 1, test) != 0:
                raise SeccompUnavailable("seccomp_rule_add(clone with a namespace flag) failed")
        for call in (b"socket", b"socketpair"):  # the family is the first argument
            number = lib.seccomp_syscall_resolve_name(call)
            tests = [
                _ArgumentTest(0, SCMP_CMP_EQ, family, 0)
                for family in range(FAMILY_LIMIT)
                if family not in SOCKET_FAMILIES
            ]
            tests.append(_ArgumentTest(0, SCMP_CMP_GE, FAMILY_LIMIT, 0))  # fmt: skip
            for test in tests:
                if lib.seccomp_rule_add_array(context, _errno_action(errno.EPERM), number, 1, test):
                    raise SeccompUnavailable(f"seccomp_rule_add({call.decode()} family) failed")
        read_end, write_end = os.pipe()
        try:
            if lib.seccomp_export_bpf(context, write_end) != 0:
                raise SeccompUnavailable("seccomp_export_bpf failed")
            os.close(write_end)
            write_end = -1
            chunks = []
            while chunk := os.read(read_end, 65536):
                chunks.append(chunk)
        finally:
            os.close(read_end)
            if write_end >= 0:
                os.close(write_end)
        return b"".join(chunks)
    finally:
        lib.seccomp_release(context)


def program_fd() -> int:
    """A new descriptor from which bwrap reads the program (the caller passes and closes it)."""
    fd = os.memfd_create("mobilenet-seccomp", 0)
    os.write(fd, program())
    os.lseek(fd, 0, os.SEEK_SET)
    return fd
