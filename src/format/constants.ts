/**
 * Constants of scoutfs format version 2: versions, magics, block geometry, key zones and types,
 * limits. Values are facts of the on-disk format (kmod/src/format.h in versity/scoutfs); changing
 * one breaks compatibility with every existing volume.
 */

export const FORMAT_VERSION_MIN = 1;
export const FORMAT_VERSION_MAX = 2;
/** Features that first exist in format version 2. */
export const FORMAT_VERSION_FEAT_RETENTION = 2;
export const FORMAT_VERSION_FEAT_PROJECT_ID = 2;
export const FORMAT_VERSION_FEAT_QUOTA = 2;
export const FORMAT_VERSION_FEAT_INDX_TAG = 2;

/** statfs(2) f_type: "SCOU". */
export const SUPER_MAGIC = 0x554f4353;

export const BLOCK_MAGIC_SUPER = 0x103c428b;
export const BLOCK_MAGIC_BTREE = 0xe597f96d;
export const BLOCK_MAGIC_BLOOM = 0x31995604;
export const BLOCK_MAGIC_SRCH_BLOCK = 0x897e4a7d;
export const BLOCK_MAGIC_SRCH_PARENT = 0xb23a2a05;
export const BLOCK_MAGIC_ALLOC_LIST = 0x8a93ac83;
export const BLOCK_MAGIC_QUORUM = 0xbc310868;

/** Small blocks (4 KiB): super, quorum blocks, file data. */
export const BLOCK_SM_SHIFT = 12;
export const BLOCK_SM_SIZE = 1 << BLOCK_SM_SHIFT;
/** Large blocks (64 KiB): btree, alloc list, bloom and srch blocks. */
export const BLOCK_LG_SHIFT = 16;
export const BLOCK_LG_SIZE = 1 << BLOCK_LG_SHIFT;
export const BLOCK_SM_LG_SHIFT = BLOCK_LG_SHIFT - BLOCK_SM_SHIFT;

/** The super block is the small block at 64 KiB on both devices. */
export const SUPER_BLKNO = (64 * 1024) >> BLOCK_SM_SHIFT; // 16
/** One quorum block per slot follows the metadata super block. */
export const QUORUM_BLKNO = SUPER_BLKNO + 1; // 17
export const QUORUM_BLOCKS = SUPER_BLKNO - 1; // 15
/** First large block on the metadata device that is not reserved for super/quorum blocks. */
export const META_DEV_START_BLKNO = (QUORUM_BLKNO + QUORUM_BLOCKS) >> BLOCK_SM_LG_SHIFT; // 2
/** First small block on the data device that holds file data. */
export const DATA_DEV_START_BLKNO = (256 * 1024) >> BLOCK_SM_SHIFT; // 64

export const UNIQUE_NAME_MAX_BYTES = 64;
export const UUID_BYTES = 16;

export const QUORUM_MAX_SLOTS = 15;
export const QUORUM_ELECT_MIN_MS = 250;
export const QUORUM_ELECT_VAR_MS = 100;
export const QUORUM_HB_IVAL_MS = 100;
export const QUORUM_MIN_HB_TIMEO_MS = 2000;
export const QUORUM_DEF_HB_TIMEO_MS = 10000;
export const QUORUM_MAX_HB_TIMEO_MS = 60000;
export const QUORUM_FENCE_TO_MS = 15000;

export const QUORUM_MSG_REQUEST_VOTE = 0;
export const QUORUM_MSG_VOTE = 1;
export const QUORUM_MSG_HEARTBEAT = 2;
export const QUORUM_MSG_RESIGNATION = 3;
export const QUORUM_MSG_INVALID = 4;

export const QUORUM_EVENT_BEGIN = 0;
export const QUORUM_EVENT_TERM = 1;
export const QUORUM_EVENT_ELECT = 2;
export const QUORUM_EVENT_FENCE = 3;
export const QUORUM_EVENT_STOP = 4;
export const QUORUM_EVENT_END = 5;
export const QUORUM_EVENT_NR = 6;
export const QUORUM_EVENT_NAMES = ["begin", "term", "elect", "fence", "stop", "end"] as const;

export const AF_NONE = 0;
export const AF_IPV4 = 1;
export const AF_IPV6 = 2;

/** Super block flags. */
export const FLAG_IS_META_BDEV = 0x01n;

/* Btrees */
export const BTREE_MAX_VAL_LEN = 896;
export const BTREE_MAX_HEIGHT = 20;
export const BTREE_VALUE_ALIGN = 8;
export const ITEM_FLAG_DELETION = 1 << 0;
export const MAX_VAL_SIZE = BTREE_MAX_VAL_LEN;

/* Allocators */
export const ALLOC_FLAG_LOW = 1 << 0;
export const ALLOC_OWNER_NONE = 0;
export const ALLOC_OWNER_SERVER = 1;
export const ALLOC_OWNER_MOUNT = 2;
export const ALLOC_OWNER_SRCH = 3;
export const ALLOC_OWNER_LOG_MERGE = 4;
export const MOUNTED_CLIENT_QUORUM = 1 << 0;

/* srch */
export const SRCH_ENTRY_MAX_BYTES = 2 + 8 * 3;
export const SRCH_LOG_BLOCK_LIMIT = (1024 * 1024) / BLOCK_LG_SIZE;
export const SRCH_COMPACT_ORDER = 2;
export const SRCH_COMPACT_NR = 1 << SRCH_COMPACT_ORDER;
export const SRCH_COMPACT_FLAG_LOG = 1 << 0;
export const SRCH_COMPACT_FLAG_SORTED = 1 << 1;
export const SRCH_COMPACT_FLAG_DELETE = 1 << 2;
export const SRCH_COMPACT_FLAG_DONE = 1 << 4;
export const SRCH_COMPACT_FLAG_ERROR = 1 << 5;

export const DATA_ALLOC_MAX_ZONES = 1024;
export const DATA_ALLOC_ZONE_BYTES = Math.ceil(DATA_ALLOC_MAX_ZONES / 8);
export const DATA_ALLOC_ZONE_LE64S = Math.ceil(DATA_ALLOC_MAX_ZONES / 64);
/** The server aims to keep this many data blocks (4 GiB) in each mount's data_avail. */
export const SERVER_DATA_FILL_TARGET = (4 * 1024 * 1024 * 1024) / BLOCK_SM_SIZE;

export const LOG_TREES_FINALIZED = 1n << 0n;

export const FOREST_BLOOM_NRS = 3;
export const FOREST_BLOOM_FUNC_BITS = BLOCK_LG_SHIFT + 3;

export const LOG_MERGE_REQUEST_SUBTREE = 1n << 0n;
export const LOG_MERGE_COMP_ERROR = 1n << 0n;
export const LOG_MERGE_COMP_REMAIN = 1n << 1n;

/* Key zones, in sort order. */
export const INODE_INDEX_ZONE = 4;
export const ORPHAN_ZONE = 8;
export const QUOTA_ZONE = 10;
export const XATTR_TOTL_ZONE = 12;
export const XATTR_INDX_ZONE = 14;
export const FS_ZONE = 16;
export const LOCK_ZONE = 20;
export const LOG_TREES_ZONE = 24;
export const MOUNTED_CLIENT_ZONE = 28;
export const SRCH_ZONE = 32;
export const FREE_EXTENT_BLKNO_ZONE = 36;
export const FREE_EXTENT_ORDER_ZONE = 40;
export const LOG_MERGE_STATUS_ZONE = 44;
export const LOG_MERGE_RANGE_ZONE = 48;
export const LOG_MERGE_REQUEST_ZONE = 52;
export const LOG_MERGE_COMPLETE_ZONE = 56;
export const LOG_MERGE_FREEING_ZONE = 60;

/* Key types within zones. */
export const INODE_INDEX_META_SEQ_TYPE = 4;
export const INODE_INDEX_DATA_SEQ_TYPE = 8;
export const ORPHAN_TYPE = 4;
export const QUOTA_RULE_TYPE = 4;
export const INODE_TYPE = 4;
export const XATTR_TYPE = 8;
export const DIRENT_TYPE = 12;
export const READDIR_TYPE = 16;
export const LINK_BACKREF_TYPE = 20;
export const SYMLINK_TYPE = 24;
export const DATA_EXTENT_TYPE = 28;
export const RENAME_TYPE = 4;
export const SRCH_LOG_TYPE = 4;
export const SRCH_BLOCKS_TYPE = 8;
export const SRCH_PENDING_TYPE = 12;
export const SRCH_BUSY_TYPE = 16;

/* Data extent flags. */
export const SEF_OFFLINE = 1 << 0;
export const SEF_UNWRITTEN = 1 << 1;
export const SEF_UNKNOWN = 0xff << 2;

/* Inodes and directories. */
export const ROOT_INO = 1n;
export const INO_FLAG_TRUNCATE = 0x1;
export const INO_FLAG_RETENTION = 0x2;
export const SYMLINK_MAX_SIZE = 4096;
export const NAME_LEN = 255;
export const LINK_MAX = 0x7fffffff;
export const DIRENT_FIRST_POS = 2n;
export const DIRENT_LAST_POS = 0xffffffffffffffffn - 1n;
export const DT_FIFO = 0;
export const DT_CHR = 1;
export const DT_DIR = 2;
export const DT_BLK = 3;
export const DT_REG = 4;
export const DT_LNK = 5;
export const DT_SOCK = 6;
export const DT_WHT = 7;

/* xattrs */
export const XATTR_MAX_NAME_LEN = 255;
export const XATTR_MAX_VAL_LEN = 65535;
export const XATTR_MAX_PART_SIZE = MAX_VAL_SIZE;
export const XATTR_MAX_TOTL_U64 = 23;

/* Locks */
export const LOCK_INODE_GROUP_NR = 1024;
export const LOCK_INODE_GROUP_MASK = LOCK_INODE_GROUP_NR - 1;
export const LOCK_SEQ_GROUP_MASK = (1 << 10) - 1;
export const LOCK_NULL = 0;
export const LOCK_READ = 1;
export const LOCK_WRITE = 2;
export const LOCK_WRITE_ONLY = 3;
export const LOCK_INVALID = 4;

/* Volume options: bit nr of each option counts u64 fields after set_bits. */
export const VOLOPT_DATA_ALLOC_ZONE_BLOCKS_NR = 0;
export const VOLOPT_DATA_ALLOC_ZONE_BLOCKS_BIT = 1n << 0n;
/** Bits for options that this format version does not define. */
export const VOLOPT_EXPANSION_BITS = ~((1n << 1n) - 1n) & 0xffffffffffffffffn;

/* Quota rules */
export const SQ_RF_TOTL_COUNT = 1 << 0;
export const SQ_NS_LITERAL = 0;
export const SQ_NS_PROJ = 1;
export const SQ_NS_UID = 2;
export const SQ_NS_GID = 3;
export const SQ_NF_SELECT = 1 << 0;
export const SQ_OP_INODE = 0;
export const SQ_OP_DATA = 1;

/* Open inode map */
export const OPEN_INO_MAP_SHIFT = 10;
export const OPEN_INO_MAP_BITS = 1 << OPEN_INO_MAP_SHIFT;
export const OPEN_INO_MAP_LE64S = OPEN_INO_MAP_BITS / 64;

export const U64_MAX = 0xffffffffffffffffn;
