/// What an API token may do. Each role can do everything the ones below it can.
public enum APIRole: String, Codable, Sendable, CaseIterable, Comparable {
    /// Reads jobs, agents, verifications and metrics.
    case viewer
    /// Also submits, cancels, resumes, sets limits, verifies and prunes.
    case `operator`
    /// Also drains agents and manages tokens.
    case admin

    private var rank: Int {
        switch self {
        case .viewer: 0
        case .operator: 1
        case .admin: 2
        }
    }

    public static func < (a: APIRole, b: APIRole) -> Bool { a.rank < b.rank }
}

/// Who made a request: the token's name and role.
public struct APIIdentity: Sendable, Equatable {
    public let name: String
    public let role: APIRole

    public init(name: String, role: APIRole) {
        self.name = name
        self.role = role
    }
}
