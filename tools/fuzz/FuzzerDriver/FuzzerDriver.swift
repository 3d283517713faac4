#if canImport(Glibc)
import Glibc
#endif

/// The function libFuzzer calls with each input.
public typealias FuzzTarget = @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt

/// Runs libFuzzer's driver on `target` with the process's arguments, and exits with its status: the entry point
/// of a fuzz target built for fuzzing. Package.swift links libFuzzer into the fuzz targets (and instruments only
/// the package's own modules), and SwiftPM links an executable target's `main` to the module's own entry point,
/// so libFuzzer's `main` is not the one that runs; its driver is found at run time.
public func runLibFuzzer(_ target: FuzzTarget) -> Never {
    typealias Driver =
        @convention(c) (
            UnsafeMutablePointer<CInt>, UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
            FuzzTarget
        ) -> CInt
    guard let driver = dlsym(nil, "LLVMFuzzerRunDriver") else {
        fatalError("libFuzzer's LLVMFuzzerRunDriver is not linked in: build with tools/fuzz-*.sh")
    }
    var argc = CommandLine.argc
    var argv = CommandLine.unsafeArgv
    exit(unsafeBitCast(driver, to: Driver.self)(&argc, &argv, target))
}
