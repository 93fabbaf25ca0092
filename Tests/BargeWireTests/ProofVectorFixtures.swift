/// HMAC-SHA256 values computed independently (Python's hmac module) for ProtocolVectorTests.
enum ServerProofHex { static let value = "91bb5f20beb8749ec9c82b643a5783634f404608512cfea25fa87b2fe7558dcd" }
enum ClientProofHex { static let value = "be99130dd47ec9971c4fc19b5f01efb593f361ac984c66d7928f4bc5d5f7bb70" }
