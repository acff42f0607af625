// swift-tools-version: 6.0
import PackageDescription

let package = Package(
    name: "shootdown",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "shootdown", targets: ["shootdown"]),
        .library(name: "ShootdownCore", targets: ["ShootdownCore"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/hummingbird-project/swift-mustache", from: "2.0.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.0.0"),
    ],
    targets: [
        .systemLibrary(name: "CLibvirt", pkgConfig: "libvirt",
                       providers: [.apt(["libvirt-dev"])]),
        .systemLibrary(name: "CLibXML2", pkgConfig: "libxml-2.0",
                       providers: [.apt(["libxml2-dev"])]),
        // libxml2 lives in its own Foundation-free target: Debian's libxml2 headers
        // pull in ICU, whose definitions clash with Foundation's bundled ICU.
        .target(name: "XMLSupport", dependencies: ["CLibXML2"]),
        .target(
            name: "ShootdownCore",
            dependencies: [
                "CLibvirt", "XMLSupport",
                .product(name: "Mustache", package: "swift-mustache"),
                .product(name: "Yams", package: "Yams"),
            ]
        ),
        .executableTarget(
            name: "shootdown",
            dependencies: [
                "ShootdownCore",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .testTarget(name: "ShootdownCoreTests", dependencies: ["ShootdownCore", "XMLSupport"],
                    exclude: ["Fixtures", "Golden"]),
        .testTarget(name: "BootTests", dependencies: ["ShootdownCore"]),
    ]
)
