/// This build's version, as `barge --version`, the agents' logs and `barge_build_info` show it.
/// Raised with each change to the wire protocol or the journal's schema, so that the nodes a
/// rolling upgrade has reached can be told apart (`barge agents`: two builds a week apart both said
/// 0.11.0; h4 of session 49). 0.12.0: protocol 20, journal v27. 0.13.0: protocol 21. 0.14.0: protocol 22. 0.15.0: protocol 23.
public enum BargeBuild {
    public static let version = "0.15.0"
}
