/* Opus as the daemon runs it (48 kHz mono, 20 ms frames, VOIP, 32 kbit/s, in-band FEC with a
 * 5 % loss hint, complexity 5; see src/audio/opus.rs), for counting instructions under qemu:
 * encodes and decodes the first N frames of a raw 48 kHz mono S16 file, looping over it.
 * Prints the bytes coded, so that two runs can be seen to have coded the same. */
#include <opus/opus.h>
#include <stdio.h>
#include <stdlib.h>

#define FRAME 960

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s SPEECH.raw FRAMES\n", argv[0]);
        return 2;
    }
    FILE *f = fopen(argv[1], "rb");
    if (!f) {
        perror(argv[1]);
        return 1;
    }
    static opus_int16 speech[48000 * 20];
    size_t n = fread(speech, sizeof speech[0], sizeof speech / sizeof speech[0], f);
    fclose(f);
    long frames = atol(argv[2]);
    if (n < FRAME || frames < 1) {
        fprintf(stderr, "need at least one frame of speech and of frames\n");
        return 1;
    }
    int e1, e2;
    OpusEncoder *enc = opus_encoder_create(48000, 1, OPUS_APPLICATION_VOIP, &e1);
    OpusDecoder *dec = opus_decoder_create(48000, 1, &e2);
    if (e1 != OPUS_OK || e2 != OPUS_OK) {
        fprintf(stderr, "opus: %s / %s\n", opus_strerror(e1), opus_strerror(e2));
        return 1;
    }
    opus_encoder_ctl(enc, OPUS_SET_BITRATE(32000));
    opus_encoder_ctl(enc, OPUS_SET_INBAND_FEC(1));
    opus_encoder_ctl(enc, OPUS_SET_PACKET_LOSS_PERC(5));
    opus_encoder_ctl(enc, OPUS_SET_COMPLEXITY(5));
    unsigned char packet[1275];
    static opus_int16 out[FRAME * 6];
    long bytes = 0;
    size_t whole = n / FRAME;
    for (long i = 0; i < frames; i++) {
        int len = opus_encode(enc, speech + (size_t)(i % (long)whole) * FRAME, FRAME, packet,
                              sizeof packet);
        if (len < 0 || opus_decode(dec, packet, len, out, FRAME * 6, 0) < 0) {
            fprintf(stderr, "opus failed at frame %ld\n", i);
            return 1;
        }
        bytes += len;
    }
    printf("%ld\n", bytes);
    opus_encoder_destroy(enc);
    opus_decoder_destroy(dec);
    return 0;
}
