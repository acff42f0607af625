# Sourced by the proof and build scripts: Debian's linux-source-6.12 as a git tree with
# the branches the proofs build through shootdown's git: kernels.
#   stock             the source as shipped
#   no-unshare-sync   huge_pmd_unshare_flush() without the GUP-fast sync (1013af4f58 undone)
#   no-collapse-sync  collapse_huge_page() without its tlb_remove_table_sync_one()
#   migrate-shared    mbind() migrates hugetlb folios mapped through shared PMD tables, as
#                     it did while hugetlb_pmd_shared() said "not shared" (v6.13 until its
#                     fix, CVE-2026-23100); only mm/mempolicy.c changes, so it builds fast
# ensure_proof_tree TREE creates what is missing (all of it, in a few minutes) and
# defines git_ for the tree.
ensure_proof_tree() {
  tree=$1
  git_() { git -C "$tree" -c user.name=shootdown -c user.email=shootdown@localhost "$@"; }

  if ! git_ rev-parse --verify -q no-collapse-sync >/dev/null; then
    echo "proof tree: $tree (Debian linux-source-6.12 with two broken branches)"
    rm -rf "$tree" && mkdir -p "$tree"
    tar -xJf /usr/src/linux-source-6.12.tar.xz -C "$tree" --strip-components=1
    git_ init -q -b stock
    # Debian's .gitignore ignores the whole top level (its packaging repository's view).
    git_ add -f -A . >/dev/null
    git_ commit -q -m "Debian linux-source-6.12, as shipped"
    git_ checkout -q -b no-unshare-sync
    # In mm/hugetlb.c, not asm-generic/tlb.h: the branch switch rebuilds one file.
    python3 - "$tree/mm/hugetlb.c" <<'PY'
import sys
path = sys.argv[1]
text = open(path).read()
old = "\ti_mmap_assert_write_locked(vma->vm_file->f_mapping);\n\n\ttlb_flush_unshared_tables(tlb);\n}"
assert text.count(old) == 1, "huge_pmd_unshare_flush() is not as expected in this tree"
open(path, "w").write(text.replace(old, "\ti_mmap_assert_write_locked(vma->vm_file->f_mapping);\n\n"
    "\t/* the 1013af4f58 race back in: flush, but no sync with GUP-fast */\n"
    "\ttlb->fully_unshared_tables = false;\n\ttlb_flush_unshared_tables(tlb);\n}"))
PY
    git_ commit -q -a -m "mm/hugetlb: no GUP-fast sync when PMD tables become exclusive"
    git_ checkout -q stock
    git_ checkout -q -b no-collapse-sync
    python3 - "$tree/mm/khugepaged.c" <<'PY'
import sys
path = sys.argv[1]
text = open(path).read()
old = "\tmmu_notifier_invalidate_range_end(&range);\n\ttlb_remove_table_sync_one();\n"
assert text.count(old) == 1, "collapse_huge_page() is not as expected in this tree"
open(path, "w").write(text.replace(old, "\tmmu_notifier_invalidate_range_end(&range);\n\t/* no GUP-fast sync after the collapse */\n"))
PY
    git_ commit -q -a -m "mm/khugepaged: no GUP-fast sync in collapse_huge_page()"
    git_ checkout -q stock
  fi
  # Added later than the others: made on its own where an older tree lacks it.
  if ! git_ rev-parse --verify -q migrate-shared >/dev/null; then
    git_ branch -q migrate-shared stock
    git_ worktree add -q "$tree.migrate-shared" migrate-shared
    python3 - "$tree.migrate-shared/mm/mempolicy.c" <<'PY'
import sys
path = sys.argv[1]
text = open(path).read()
old = "\t    (!folio_likely_mapped_shared(folio) && !hugetlb_pmd_shared(pte)))\n"
assert text.count(old) == 1, "queue_folios_hugetlb() is not as expected in this tree"
open(path, "w").write(text.replace(old, "\t    !folio_likely_mapped_shared(folio)) /* hugetlb_pmd_shared() as broken by 59d9094df3d7 */\n"))
PY
    git -C "$tree.migrate-shared" -c user.name=shootdown -c user.email=shootdown@localhost commit -q -a \
      -m "mm/mempolicy: migrate hugetlb folios in shared PMD tables (CVE-2026-23100's impact)"
    git_ worktree remove "$tree.migrate-shared"
  fi
}
