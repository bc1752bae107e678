/// The little XML S3 answers with (an upload id, a listing, an error), read without a parser:
/// the elements needed hold text only, and every answer is read bounded in size first.
enum S3XML {
    /// The text of each `<name>…</name>` in `xml`, entities decoded.
    static func values(_ name: String, in xml: Substring) -> [String] {
        elements(name, in: xml).map { decode($0) }
    }

    static func value(_ name: String, in xml: Substring) -> String? { values(name, in: xml).first }

    /// The raw contents of each `<name>…</name>` (or `<name attributes>…</name>`) in `xml`.
    static func elements(_ name: String, in xml: Substring) -> [Substring] {
        var found: [Substring] = []
        var rest = xml
        let close = "</\(name)>"
        while let open = rest.range(of: "<\(name)") {
            let cursor = open.upperBound
            guard cursor < rest.endIndex else { break }
            guard ">/ ".contains(rest[cursor]) else {  // a longer name that starts the same
                rest = rest[cursor...]
                continue
            }
            guard let end = rest[cursor...].firstIndex(of: ">") else { break }
            let bodyStart = rest.index(after: end)
            if end > cursor && rest[rest.index(before: end)] == "/" {  // <name/>: empty
                found.append(rest[bodyStart..<bodyStart])
                rest = rest[bodyStart...]
                continue
            }
            guard let closing = rest[bodyStart...].range(of: close) else { break }
            found.append(rest[bodyStart..<closing.lowerBound])
            rest = rest[closing.upperBound...]
        }
        return found
    }

    /// `&amp;` `&lt;` `&gt;` `&quot;` `&apos;` and numeric references decoded.
    static func decode(_ text: Substring) -> String {
        guard text.contains("&") else { return String(text) }
        var out = ""
        var rest = text
        while let amp = rest.firstIndex(of: "&") {
            out += rest[..<amp]
            let after = rest[rest.index(after: amp)...]
            guard let semi = after.prefix(10).firstIndex(of: ";") else {
                out += "&"
                rest = after
                continue
            }
            let entity = after[..<semi]
            switch entity {
            case "amp": out += "&"
            case "lt": out += "<"
            case "gt": out += ">"
            case "quot": out += "\""
            case "apos": out += "'"
            default:
                let number = entity.hasPrefix("#x") ? UInt32(entity.dropFirst(2), radix: 16) : entity.hasPrefix("#") ? UInt32(entity.dropFirst()) : nil
                if let number, let scalar = Unicode.Scalar(number) { out.unicodeScalars.append(scalar) } else { out += "&\(entity);" }
            }
            rest = after[after.index(after: semi)...]
        }
        return out + rest
    }

    /// `text` escaped for an XML element.
    static func escape(_ text: String) -> String {
        var out = ""
        for c in text {
            switch c {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            default: out.append(c)
            }
        }
        return out
    }
}
