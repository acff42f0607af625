import Foundation

/// How cells share guests.
public enum Isolation: String, Sendable, Codable, CaseIterable {
    /// Cells that need the same guest run one after another in one boot (GuestBatch).
    case batch
    /// One boot per cell.
    case cell
}

/// The one place cells are expanded and grouped into guest boots: `run` (and `compare`
/// and `bisect`, which run through it) and `matrix --plan` all plan with it.
public enum CellPlanner {
    /// One cell before it is made concrete: indices into the caller's kernels and tests.
    public struct Point: Sendable, Equatable {
        public var kernel: Int
        public var paravirt: Paravirt?
        public var vcpus: Int
        public var test: Int
        /// 1-based when the run repeats cells; nil otherwise.
        public var repeatIndex: Int?
    }

    /// kernel × paravirt × vCPU count × test × repeat, in that order: the order names
    /// shards, so every runner of a sharded spec computes the same slices.
    public static func expand(kernels: Int, paravirt: [Paravirt?], vcpus: [Int], tests: Int, repeats: Int) -> [Point] {
        var points: [Point] = []
        for kernel in 0..<kernels {
            for pv in paravirt {
                for count in vcpus {
                    for test in 0..<tests {
                        for repeatIndex in 1...max(1, repeats) {
                            points.append(Point(kernel: kernel, paravirt: pv, vcpus: count, test: test,
                                                repeatIndex: repeats > 1 ? repeatIndex : nil))
                        }
                    }
                }
            }
        }
        return points
    }

    /// Why a cell cannot run here, before any boot.
    public static func skipReason(accel: Accelerator, paravirt: Paravirt?, accelReason: String) -> String? {
        if accel == .tcg && paravirt == .on {
            return "paravirt on needs KVM: TCG exposes no KVM paravirt features (\(accelReason))"
        }
        return nil
    }

    /// Most cells in one boot: a batch that ends early (a failure, a splat) sends the
    /// rest to a fresh boot, so a long batch risks more repeated work.
    public static let defaultBatchSize = 8

    /// Groups cells (by position) into boots. Cells with the same key need the same guest;
    /// a nil key runs alone (a skipped cell, which boots nothing). Groups are cut into
    /// at most `maxSize` cells, and into more pieces when there are fewer boots than
    /// workers, so that `jobs` guests run at once. Order follows the cells.
    public static func batches<Key: Hashable>(keys: [Key?], isolation: Isolation, maxSize: Int = defaultBatchSize,
                                              jobs: Int = 1) -> [[Int]] {
        guard isolation == .batch else { return keys.indices.map { [$0] } }
        var groups: [[Int]] = [], groupOfKey: [Key: Int] = [:]
        for (index, key) in keys.enumerated() {
            guard let key else {
                groups.append([index])
                continue
            }
            if let group = groupOfKey[key] {
                groups[group].append(index)
            } else {
                groupOfKey[key] = groups.count
                groups.append([index])
            }
        }
        let booting = groups.filter { keys[$0[0]] != nil }.count
        // Pieces per group so that every worker has a boot, where there are cells enough.
        let share = booting == 0 ? 1 : (jobs + booting - 1) / booting
        var batches: [[Int]] = []
        for group in groups {
            let pieces = min(group.count, max((group.count + maxSize - 1) / max(1, maxSize), share))
            let size = (group.count + pieces - 1) / pieces
            batches += stride(from: 0, to: group.count, by: size).map { Array(group[$0..<min($0 + size, group.count)]) }
        }
        return batches.sorted { $0[0] < $1[0] }
    }
}
