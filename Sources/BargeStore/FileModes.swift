/// The mode a file gets at the destination.
public enum FileModes {
    /// The source's permission bits and sticky bit, without set-user-ID and set-group-ID. Owners
    /// are not kept (a file belongs to the destination agent's user), so a setuid program of an
    /// ordinary user arrived as a setuid-root one at an agent run as root, which any local user
    /// could then run as root. GNU `cp -p` drops the two bits when it cannot keep the owner; so
    /// does Barge for every file a transfer (or repair) writes, and its quick check expects them
    /// dropped. A file demoted and promoted in place keeps its own mode.
    public static func atDestination(_ mode: UInt32) -> UInt32 { mode & 0o1777 }
}
