#include "CBargeNet.h"
#include <stddef.h>

#if defined(__linux__)
#include <linux/tcp.h>
#include <linux/inet_diag.h>
_Static_assert(offsetof(struct barge_tcp_info, tcpi_rtt) == offsetof(struct tcp_info, tcpi_rtt), "tcpi_rtt");
_Static_assert(offsetof(struct barge_tcp_info, tcpi_total_retrans) == offsetof(struct tcp_info, tcpi_total_retrans), "tcpi_total_retrans");
_Static_assert(offsetof(struct barge_tcp_info, tcpi_min_rtt) == offsetof(struct tcp_info, tcpi_min_rtt), "tcpi_min_rtt");
_Static_assert(sizeof(struct barge_tcp_bbr_info) == sizeof(struct tcp_bbr_info), "tcp_bbr_info");
_Static_assert(offsetof(struct barge_tcp_bbr_info, bbr_cwnd_gain) == offsetof(struct tcp_bbr_info, bbr_cwnd_gain), "bbr_cwnd_gain");
#endif

uint32_t barge_tcp_info_size(void) { return (uint32_t)sizeof(struct barge_tcp_info); }
