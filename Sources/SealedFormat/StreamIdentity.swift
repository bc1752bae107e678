/// What names one sealed stream: the id a file is known by, derived from its header, and the
/// stream digest that names its exact bytes (docs/FORMAT.md sections 10 and 11). Both are keyless,
/// so the gateway computes them as bytes arrive and a recipient checks them against what it opens.
public enum StreamIdentity {
    static let fileIDLabel = Array("SafeChat file id v1".utf8) + [0]

    /// The file id bound to a stream: the first 16 bytes of SHA-256("SafeChat file id v1" || 0x00 ||
    /// header), as 32 lowercase hex digits. The header carries the stream's random salt and its key
    /// commitment, and every record is authenticated under the key they derive, so an id names one
    /// stream: a gateway that serves another stream under it is caught before a byte is opened.
    public static func fileID(forHeader header: [UInt8]) -> String {
        Secrets.hex(SHA256Hasher.hash(fileIDLabel + header).prefix(16))
    }

    public static func fileID(for header: StreamHeader) -> String { fileID(forHeader: header.encoded()) }

    /// The first link of the stream digest chain: SHA-256(header).
    public static func digestStart(header: [UInt8]) -> [UInt8] { SHA256Hasher.hash(header) }

    /// The next link: SHA-256(previous || record header (16) || tag (16)).
    public static func digestStep(_ previous: [UInt8], recordHeader: some Collection<UInt8>, tag: some Collection<UInt8>) -> [UInt8] {
        SHA256Hasher.hash(previous + recordHeader + tag)
    }
}
