import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import SafeChatWeb

/// The browser client (issue 12): `GET /` is the page, `GET /assets/<version>/<file>` its CSS and
/// ES modules, cached for good because the version names their exact bytes. Every answer carries a
/// strict Content-Security-Policy: only this origin's scripts, no inline script, no eval, never in
/// a frame.
struct WebRoutes: Sendable {
    let assets: WebAssets

    static let contentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        + "connect-src 'self'; worker-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

    func register(on router: Router<GatewayContext>) {
        router.get("/") { _, _ in
            Self.response(assets.index, type: "text/html; charset=utf-8", cache: "no-cache")
        }
        router.get("/assets/:version/:file") { _, context in
            guard let version = context.parameters.get("version"), let file = context.parameters.get("file"),
                  let asset = assets.asset(file, version: version)
            else { throw GatewayError(.notFound, .notFound, "no such asset; reload the page") }
            return Self.response(asset.bytes, type: asset.contentType, cache: "public, max-age=31536000, immutable")
        }
    }

    static func response(_ bytes: [UInt8], type: String, cache: String) -> Response {
        Response(status: .ok, headers: [
            .contentType: type, .cacheControl: cache, .contentSecurityPolicy: contentSecurityPolicy,
            HTTPField.Name("X-Content-Type-Options")!: "nosniff", HTTPField.Name("Referrer-Policy")!: "no-referrer",
            HTTPField.Name("Cross-Origin-Opener-Policy")!: "same-origin",
        ], body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
    }
}
