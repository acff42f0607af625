// SPDX-License-Identifier: GPL-2.0
/*
 * shootdown_widen: widens kernel race windows for shootdown's race tests.
 *
 * Each widening point is a kprobe whose pre-handler busy-waits for a given number of
 * microseconds when the probed task's comm starts with `comm`, at most `limit` times.
 * A walker that sits with IRQs off (GUP-fast) then stays inside its window long
 * enough for another vCPU to unshare and reuse a page table; on a kernel that syncs
 * with GUP-fast the unsharer waits for the walker instead, so the window closes.
 *
 * Watch points only count: hits, and hits while some widened delay is in progress
 * (how often the unshare really ran inside a window). Statistics are read back from
 * /sys/module/shootdown_widen/parameters/stats, one line per point:
 *   point <symbol>+<offset> delay_us=<n> limit=<n> armed=<0|1> error=<errno> hits=<n> fired=<n>
 *   watch <symbol>+<offset> armed=<0|1> error=<errno> hits=<n> during=<n>
 *
 * Parameters (all set at load time by the agent):
 *   points="sym[+off]:delay_us:limit,..."  limit -1: unlimited
 *   watch="sym[+off],..."
 *   comm="prefix"                          empty: every task
 */
#include <linux/atomic.h>
#include <linux/delay.h>
#include <linux/kernel.h>
#include <linux/kprobes.h>
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/sched.h>
#include <linux/slab.h>
#include <linux/string.h>

#define MAX_POINTS 16
#define MAX_DELAY_US 1000000 /* one second: longer would trip RCU stall warnings */

static char *points = "";
module_param(points, charp, 0444);
MODULE_PARM_DESC(points, "widening points: sym[+off]:delay_us:limit,...");
static char *watch = "";
module_param(watch, charp, 0444);
MODULE_PARM_DESC(watch, "watch points: sym[+off],...");
static char comm[TASK_COMM_LEN];
module_param_string(comm, comm, sizeof(comm), 0444);
MODULE_PARM_DESC(comm, "only tasks whose comm starts with this are delayed");

struct point {
	struct kprobe kp;
	char symbol[KSYM_NAME_LEN];
	unsigned int offset;
	bool is_watch, armed;
	int error;
	unsigned int delay_us;
	long limit;
	atomic_long_t hits, fired, during;
};

static struct point table[MAX_POINTS];
static int npoints;
static atomic_t in_window = ATOMIC_INIT(0);

static bool task_selected(void)
{
	return !comm[0] || !strncmp(current->comm, comm, strnlen(comm, sizeof(comm)));
}

static int widen_pre(struct kprobe *kp, struct pt_regs *regs)
{
	struct point *p = container_of(kp, struct point, kp);
	unsigned int left;

	atomic_long_inc(&p->hits);
	if (!task_selected())
		return 0;
	if (p->limit >= 0 && atomic_long_inc_return(&p->fired) > p->limit) {
		atomic_long_dec(&p->fired);
		return 0;
	}
	if (p->limit < 0)
		atomic_long_inc(&p->fired);
	atomic_inc(&in_window);
	/* mdelay chunks: udelay of large values overflows on some arches. */
	for (left = p->delay_us; left >= 1000; left -= 1000)
		mdelay(1);
	udelay(left);
	atomic_dec(&in_window);
	return 0;
}

static int watch_pre(struct kprobe *kp, struct pt_regs *regs)
{
	struct point *p = container_of(kp, struct point, kp);

	atomic_long_inc(&p->hits);
	if (atomic_read(&in_window))
		atomic_long_inc(&p->during);
	return 0;
}

/* "sym+off" → symbol and offset; false on a malformed entry. */
static bool parse_location(char *text, struct point *p)
{
	char *plus = strchr(text, '+');

	if (plus) {
		*plus = '\0';
		if (kstrtouint(plus + 1, 0, &p->offset))
			return false;
	}
	if (!*text || strscpy(p->symbol, text, sizeof(p->symbol)) < 0)
		return false;
	return true;
}

static int parse_list(const char *list, bool is_watch)
{
	char *copy, *cursor, *entry;
	int ret = 0;

	copy = kstrdup(list, GFP_KERNEL);
	if (!copy)
		return -ENOMEM;
	cursor = copy;
	while ((entry = strsep(&cursor, ",")) != NULL) {
		struct point *p;
		char *delay, *limit;

		if (!*entry)
			continue;
		if (npoints == MAX_POINTS) {
			ret = -E2BIG;
			break;
		}
		p = &table[npoints];
		p->is_watch = is_watch;
		p->limit = -1;
		if (!is_watch) {
			delay = strchr(entry, ':');
			limit = delay ? strchr(delay + 1, ':') : NULL;
			if (!delay || !limit) {
				ret = -EINVAL;
				break;
			}
			*delay++ = '\0';
			*limit++ = '\0';
			if (kstrtouint(delay, 10, &p->delay_us) || p->delay_us > MAX_DELAY_US ||
			    kstrtol(limit, 10, &p->limit)) {
				ret = -EINVAL;
				break;
			}
		}
		if (!parse_location(entry, p)) {
			ret = -EINVAL;
			break;
		}
		npoints++;
	}
	kfree(copy);
	return ret;
}

static int stats_get(char *buffer, const struct kernel_param *kp)
{
	int len = 0, i;

	for (i = 0; i < npoints; i++) {
		struct point *p = &table[i];

		if (p->is_watch)
			len += scnprintf(buffer + len, PAGE_SIZE - len,
					 "watch %s+%u armed=%d error=%d hits=%ld during=%ld\n",
					 p->symbol, p->offset, p->armed, p->error,
					 atomic_long_read(&p->hits), atomic_long_read(&p->during));
		else
			len += scnprintf(buffer + len, PAGE_SIZE - len,
					 "point %s+%u delay_us=%u limit=%ld armed=%d error=%d hits=%ld fired=%ld\n",
					 p->symbol, p->offset, p->delay_us, p->limit, p->armed, p->error,
					 atomic_long_read(&p->hits), atomic_long_read(&p->fired));
	}
	return len;
}

static const struct kernel_param_ops stats_ops = { .get = stats_get };
module_param_cb(stats, &stats_ops, NULL, 0444);
MODULE_PARM_DESC(stats, "per-point hit counts (read only)");

static int __init widen_init(void)
{
	int ret, i;

	ret = parse_list(points, false);
	if (!ret)
		ret = parse_list(watch, true);
	if (ret) {
		pr_err("shootdown_widen: bad points/watch parameter (%d)\n", ret);
		return ret;
	}
	/* A point that cannot be armed (unknown or inlined symbol) is reported, not fatal:
	 * the host says which in the cell, and the test runs with the others. */
	for (i = 0; i < npoints; i++) {
		struct point *p = &table[i];

		p->kp.symbol_name = p->symbol;
		p->kp.offset = p->offset;
		p->kp.pre_handler = p->is_watch ? watch_pre : widen_pre;
		p->error = register_kprobe(&p->kp);
		p->armed = !p->error;
		pr_info("shootdown_widen: %s %s+%u %s (%d)\n", p->is_watch ? "watch" : "point",
			p->symbol, p->offset, p->armed ? "armed" : "not armed", p->error);
	}
	return 0;
}

static void __exit widen_exit(void)
{
	int i;

	for (i = 0; i < npoints; i++)
		if (table[i].armed)
			unregister_kprobe(&table[i].kp);
}

module_init(widen_init);
module_exit(widen_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("shootdown: kprobe busy-waits that widen race windows");
