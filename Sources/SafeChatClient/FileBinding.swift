import Foundation
import SafeChatAPI
import SealedStream

/// What a recipient checks before it trusts that a file id names the stream the gateway serves
/// under it: the id must be the one bound to the stream's header (docs/FORMAT.md section 11). The
/// header carries the stream's salt and key commitment, and every record is authenticated under the
/// key they derive, so once the id and the header agree, no other stream can be passed off as the
/// file: not another file of the same session, not another attempt's bytes on a resume.
public enum FileBinding {
    /// Throws ``ClientError/refused(_:)`` unless `manifest` is the file `id` names.
    public static func check(_ manifest: FileManifest, requested id: String) throws {
        guard manifest.fileID.value == id else {
            throw ClientError.refused("asked for file \(id), the gateway answered with the manifest of file \(manifest.fileID)")
        }
        try check(id: id, header: manifest.header)
    }

    /// Throws ``ClientError/refused(_:)`` unless `id` is bound to `header`.
    public static func check(id: String, header: StreamHeader) throws {
        guard FileID(id)?.isBound(to: header) == true else {
            throw ClientError.refused("file \(id) is not the stream the gateway serves under that id (its header is another file's, "
                                      + "or the file was uploaded without binding its id to its header); nothing was written")
        }
    }

    /// Why a listing or an announcement cannot name this file by its id, or nil if it can.
    public static func problem(id: String, header: StreamHeader) -> String? {
        FileID(id)?.isBound(to: header) == true ? nil : "its id is not bound to the stream header listed with it"
    }
}
