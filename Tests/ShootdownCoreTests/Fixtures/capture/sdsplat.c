// Test module: provokes one kernel diagnostic at load time, for parser fixtures.
#include <linux/module.h>
#include <linux/mm.h>
#include <linux/gfp.h>

static char *what = "warn";
module_param(what, charp, 0444);

static int *volatile sdsplat_ptr; /* always NULL */

static int __init sdsplat_init(void)
{
	if (!strcmp(what, "warn")) {
		WARN_ON(1);
		return 0;	/* stay loaded: one splat (busybox insmod retries init_module on failure) */
	} else if (!strcmp(what, "oops")) {
		*sdsplat_ptr = 1;
	} else if (!strcmp(what, "bug")) {
		BUG();
	} else if (!strcmp(what, "badpage")) {
		struct page *pg = alloc_page(GFP_KERNEL);
		if (pg) {
			atomic_set(&pg->_mapcount, 3);
			__free_page(pg);
		}
		return 0;
	}
	return -ENODEV;
}
module_init(sdsplat_init);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("shootdown fixture splat trigger");
