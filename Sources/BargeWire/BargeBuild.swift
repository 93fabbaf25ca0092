/// This build's version, as `barge --version`, the agents' logs and `barge_build_info` show it.
public enum BargeBuild {
    public static let version = "0.11.0"
}
