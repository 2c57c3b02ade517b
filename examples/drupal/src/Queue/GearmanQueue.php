<?php

namespace Drupal\gearctl_example\Queue;

use Drupal\Core\Queue\QueueInterface;

/**
 * A write-only Drupal queue that hands each item to Gearman, the way the old
 * Drupal gearman module's queue did: createItem() submits a background job whose
 * workload is serialize($data), and a gearctl (or PHP) worker runs it. Claiming
 * is the workers' business, so claimItem() never returns an item.
 *
 * Route a queue through it in settings.php (see ../../settings.php.example):
 *   $settings['queue_service_notifications_send_users'] = 'queue.gearman';
 */
class GearmanQueue implements QueueInterface {

  protected string $name;
  protected string $servers;
  protected ?\GearmanClient $client = NULL;

  public function __construct(string $name, string $servers = '127.0.0.1:4730') {
    $this->name = $name;
    $this->servers = $servers;
  }

  /**
   * Submits $data as a background job named after the queue. Returns the job
   * handle, or FALSE when no server queued it (Drupal's contract for a failure:
   * the caller keeps the item), with the reason in the PHP error log.
   */
  public function createItem($data) {
    try {
      if ($this->client === NULL) {
        // php-gearman connects here, and throws when no server answers.
        $client = new \GearmanClient();
        $client->addServers($this->servers);
        $this->client = $client;
      }
      $handle = $this->client->doBackground($this->name, serialize($data));
      if ($this->client->returnCode() === GEARMAN_SUCCESS) {
        return $handle;
      }
      error_log("gearman queue {$this->name}: not queued: " . $this->client->error());
    }
    catch (\GearmanException $e) {
      $this->client = NULL;
      error_log("gearman queue {$this->name}: not queued: " . $e->getMessage());
    }
    return FALSE;
  }

  public function numberOfItems() {
    return 0;  // gearmand knows: `gearctl status` shows the queue
  }

  public function claimItem($lease_time = 3600) {
    return FALSE;
  }

  public function deleteItem($item) {
  }

  public function releaseItem($item) {
    return FALSE;
  }

  public function createQueue() {
  }

  public function deleteQueue() {
  }

}
