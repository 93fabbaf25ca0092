#ifndef CBARGE_NET_H
#define CBARGE_NET_H

#include <stdint.h>

/// The head of Linux's `struct tcp_info` (linux/tcp.h), through `tcpi_min_rtt`: glibc's copy in
/// netinet/tcp.h stops at `tcpi_total_retrans`. The kernel only ever appends to this struct and
/// copies min(len, its size) bytes, so a prefix is safe to ask for.
struct barge_tcp_info {
    uint8_t tcpi_state;
    uint8_t tcpi_ca_state;
    uint8_t tcpi_retransmits;
    uint8_t tcpi_probes;
    uint8_t tcpi_backoff;
    uint8_t tcpi_options;
    uint8_t tcpi_wscale;
    uint8_t tcpi_flags;

    uint32_t tcpi_rto;
    uint32_t tcpi_ato;
    uint32_t tcpi_snd_mss;
    uint32_t tcpi_rcv_mss;

    uint32_t tcpi_unacked;
    uint32_t tcpi_sacked;
    uint32_t tcpi_lost;
    uint32_t tcpi_retrans;
    uint32_t tcpi_fackets;

    uint32_t tcpi_last_data_sent;
    uint32_t tcpi_last_ack_sent;
    uint32_t tcpi_last_data_recv;
    uint32_t tcpi_last_ack_recv;

    uint32_t tcpi_pmtu;
    uint32_t tcpi_rcv_ssthresh;
    uint32_t tcpi_rtt;
    uint32_t tcpi_rttvar;
    uint32_t tcpi_snd_ssthresh;
    uint32_t tcpi_snd_cwnd;
    uint32_t tcpi_advmss;
    uint32_t tcpi_reordering;

    uint32_t tcpi_rcv_rtt;
    uint32_t tcpi_rcv_space;

    uint32_t tcpi_total_retrans;

    uint64_t tcpi_pacing_rate;
    uint64_t tcpi_max_pacing_rate;
    uint64_t tcpi_bytes_acked;
    uint64_t tcpi_bytes_received;
    uint32_t tcpi_segs_out;
    uint32_t tcpi_segs_in;

    uint32_t tcpi_notsent_bytes;
    uint32_t tcpi_min_rtt;
};

/// BBR's model of the path (`TCP_CC_INFO` on a BBR socket: linux/inet_diag.h's `tcp_bbr_info`).
/// The kernel copies only what its algorithm has: nothing for cubic or reno, 16 bytes for vegas
/// and dctcp, all 20 for BBR; so `bbr_cwnd_gain` is non-zero only on a BBR socket.
struct barge_tcp_bbr_info {
    uint32_t bbr_bw_lo;        /* max-filtered delivery rate, bytes per second: low 32 bits */
    uint32_t bbr_bw_hi;        /* and high 32 bits */
    uint32_t bbr_min_rtt;      /* min-filtered RTT, microseconds */
    uint32_t bbr_pacing_gain;  /* fixed point, 256 = 1.0 */
    uint32_t bbr_cwnd_gain;    /* fixed point, 256 = 1.0 */
};

/// The size of the prefix above, for tests that pin its layout.
uint32_t barge_tcp_info_size(void);

#endif
